"""The benchmark harness works against a real `idp serve` (it measures nothing here: no timing is asserted)."""

import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest

from bench import SCENARIOS, BenchError, Target
from bench.harness import Run, run_load
from bench.scenarios import load_all
from bench.server import free_port, running_server, serving
from tests.conftest import POSTGRES_URL, require_service

load_all()


def test_scenarios_are_registered():
    assert {"discovery", "jwks", "jwks_304"} <= set(SCENARIOS)


def test_a_server_that_never_answers_is_reported_with_where_its_processes_wait_and_what_it_printed(tmp_path):
    """A start that hangs (CI saw node-oidc-provider do so) leaves its state in the error, then is stopped."""
    hung = ["sh", "-c", "echo generating keys; sleep 600 & wait"]
    with pytest.raises(BenchError) as raised:
        with serving(hung, name="hung server", ready_url=f"http://127.0.0.1:{free_port()}/", log=tmp_path / "log",
                     env=dict(os.environ), timeout=1):
            pass
    report = str(raised.value)
    assert "hung server did not answer" in report and "ConnectionRefusedError" in report
    assert "(sleep) state S, waits in" in report and "(sh) state S, waits in " in report
    assert report.endswith("its output:\ngenerating keys\n")


def test_the_harness_against_one_real_server(shared_server, idp_env, tmp_path):
    """One `idp serve` for every harness check (a server start costs seconds; the checks, milliseconds)."""
    live_server = shared_server()
    run_load_is_bounded_by_request_count_and_records_each_request(live_server)
    unexpected_answers_are_counted_as_errors_not_latencies(live_server)
    jwks_304_scenario_revalidates_with_the_etag(live_server)
    scenario_setup_refuses_a_server_with_another_issuer(live_server)
    make_bench_command_prints_the_table_and_writes_json(live_server, idp_env, tmp_path)


def run_load_is_bounded_by_request_count_and_records_each_request(live_server):
    request = SCENARIOS["jwks"].setup(Target(live_server))
    run = run_load(live_server, request, concurrency=2, duration=60, max_requests=20)
    assert (run.requests, run.errors, len(run.latencies)) == (20, 0, 20)
    assert 0 < run.percentile(50) <= run.percentile(99) == max(run.latencies)


def unexpected_answers_are_counted_as_errors_not_latencies(live_server):
    def request(http):
        http.get("/no-such-path")

    run = run_load(live_server, request, concurrency=2, duration=60, max_requests=6)
    assert (run.requests, run.errors) == (0, 6)
    assert "expected 200, got 404" in run.first_error


def jwks_304_scenario_revalidates_with_the_etag(live_server):
    request = SCENARIOS["jwks_304"].setup(Target(live_server))
    run = run_load(live_server, request, concurrency=1, duration=60, max_requests=3)
    assert (run.requests, run.errors) == (3, 0)


def scenario_setup_refuses_a_server_with_another_issuer(live_server):
    with pytest.raises(BenchError, match="issuer"):
        SCENARIOS["discovery"].setup(Target(live_server, issuer="https://other.example"))


def make_bench_command_prints_the_table_and_writes_json(live_server, idp_env, tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--base-url", live_server, "-s", "discovery", "-s", "jwks", "-c", "1,2",
         "-d", "30", "-n", "8", "-r", "2", "--warmup", "0", "--json", str(out)],
        env={**idp_env, "IDP_ISSUER": live_server}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("discovery ", "jwks "))]
    assert [(row[0], row[1], row[-1]) for row in rows] == [
        ("discovery", "1", "0"), ("discovery", "2", "0"), ("jwks", "1", "0"), ("jwks", "2", "0")]
    levels = json.loads(out.read_text())["levels"]
    assert [(level["scenario"], level["concurrency"], len(level["runs"])) for level in levels] == [
        ("discovery", 1, 2), ("discovery", 2, 2), ("jwks", 1, 2), ("jwks", 2, 2)]
    assert all(run["requests"] == 8 for level in levels for run in level["runs"])
    assert all(level["median_p50_ms"] <= level["median_p99_ms"] for level in levels)


def test_percentiles_are_nearest_rank():
    run = Run(concurrency=1, requests=100, errors=0, elapsed=1.0, latencies=[i / 1000 for i in range(100, 0, -1)])
    assert (run.percentile(50), run.percentile(99), run.rps) == (0.05, 0.099, 100.0)


def test_unknown_scenario_is_one_line_exit_2():
    done = subprocess.run([sys.executable, "-m", "bench", "-s", "nope"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: unknown scenario nope")


def test_the_benchmark_server_runs_on_postgresql_only():
    with pytest.raises(BenchError, match="PostgreSQL"):
        with running_server("sqlite:////tmp/bench.sqlite3", workers=1, threads=1):
            pass


def test_the_fuzz_of_a_running_server_reports_no_5xx_and_every_tables_rows(live_server, idp_env, tmp_path):
    """`python -m bench.fuzz`, a few hundred requests: zero 5xx, no traceback in the server's log, rows per table."""
    from idp.models import Base

    done = subprocess.run(
        [sys.executable, "-m", "bench.fuzz", "--base-url", live_server, "-n", "300", "-c", "4", "--seed", "9", "--max-seconds", "120"],
        env={**idp_env, "IDP_ISSUER": live_server}, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sent 300 requests" in done.stdout and "\n5xx: 0\n" in done.stdout and "timeouts: 0;" in done.stdout
    for table in Base.metadata.tables:
        assert f"\n{table} " in done.stdout, table
    port = live_server.rsplit(":", 1)[1]
    log = (tmp_path / f"serve-{port}.log").read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


# --- `--compare`: the IdP beside node-oidc-provider, both driven by wrk ----------------------------


def _scratch_postgres(name: str) -> str:
    """A database of its own next to the test database (the benchmark recreates its schema)."""
    from sqlalchemy import create_engine, text

    from tests.conftest import XDIST_WORKER

    base, _, test_name = POSTGRES_URL.rpartition("/")
    own = f"{test_name.split('?')[0]}_{name}_{XDIST_WORKER or 'main'}"
    engine = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        if connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": own}) is None:
            connection.execute(text(f'CREATE DATABASE "{own}"'))
    engine.dispose()
    return f"{base}/{own}"


def test_a_node_that_does_not_come_up_is_reported_and_started_again_on_another_port(monkeypatch, capsys):
    """The first port is taken (a listener that never accepts): node says so and exits, and the harness
    starts it once more on a free port, saying so on stderr."""
    import socket
    import urllib.request

    from bench import node_server

    require_service("node", node_server.node_version() is not None and shutil.which("npm") is not None, hint="install Node 20.19+ and npm")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = iter([port])
        monkeypatch.setattr(node_server, "free_port", lambda: next(ports, None) or free_port())
        with node_server.running_node(1) as node:
            with urllib.request.urlopen(node.base_url + "/.well-known/openid-configuration", timeout=30) as answer:
                assert json.load(answer)["issuer"] == node.base_url
    reported = capsys.readouterr().err
    assert "node-oidc-provider (1 process) exited with 1" in reported
    assert f"cannot listen on http://127.0.0.1:{port}: listen EADDRINUSE" in reported
    assert reported.rstrip().endswith(node_server.RESTARTED)


@pytest.mark.filterwarnings("default::UserWarning")  # a restart is shown in the run's summary, not failed
def test_compare_runs_every_scenario_on_the_idp_and_node_with_plausible_numbers(tmp_path):
    """`python -m bench --compare`, one second per scenario and side: one table, every scenario, no errors.

    One connection: a second of load then keeps one core busy, not both (about 11 s less CPU
    for the run); the numbers only need to be plausible here.
    """
    from bench.compare import SCENARIOS as COMPARED
    from bench.loadgen import WRK
    from bench.node_server import RESTARTED, node_version

    require_service("database", bool(POSTGRES_URL and POSTGRES_URL.startswith("postgresql")))
    require_service("node", node_version() is not None and shutil.which("npm") is not None, hint="install Node 20.19+ and npm")
    require_service("wrk", os.access(WRK, os.X_OK), hint="apt-get install wrk")
    out = tmp_path / "compare.json"
    env = {name: value for name, value in os.environ.items() if not name.startswith("IDP_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--compare", "-c", "1", "-d", "1", "-r", "1", "--warmup", "0",
         "--database-url", _scratch_postgres("bench"), "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    if RESTARTED in done.stderr:
        warnings.warn(f"bench --compare restarted node-oidc-provider:\n{done.stderr[-3000:]}", stacklevel=1)
    for scenario in COMPARED:
        assert f"\n{scenario.label} " in done.stdout, scenario.label
    assert "ERRORS" not in done.stdout
    results = json.loads(out.read_text())["results"]
    assert list(results) == [scenario.name for scenario in COMPARED]
    measured = {side: sorted(name for name, per_side in results.items() if "n/a" not in per_side[side])
                for side in ("idp", "node1", "node2")}
    every = sorted(results)
    assert measured == {
        "idp": sorted(set(every) - {"cc_es256"}),
        "node1": sorted(set(every) - {"password_signin"}),
        "node2": sorted(["cc_rs256", "cc_es256", "jwks", "discovery"]),
    }
    for name, per_side in results.items():
        for side, levels in per_side.items():
            if "n/a" in levels:
                assert levels["n/a"], (name, side)  # a side that cannot run a scenario says why
                continue
            level = levels["1"]
            assert level["errors"] == 0 and level["rps"] > 0, (name, side, level)
            assert 0 < level["p50_ms"] <= level["p99_ms"], (name, side, level)
            assert level["cpu_s_per_1000"] > 0, (name, side, level)
            assert level["generator_cpu_share"] < 1, (name, side, level)  # wrk is not the bottleneck
