"""A real Celery worker (Redis when IDP_TEST_REDIS_URL is set) runs rotation and purge end to end.

Time is driven: every task is sent with the `now` it should act at (IDP_JOB_CLOCK_OVERRIDE is on
for these tests only). The fault tests SIGKILL the process running a rotation before each of its
writes and commits in turn and check, every time, that
- every algorithm still has exactly one active key, which is published and was published for the lead time;
- every key that verifies a still-live token is still published;
- the step was all-or-nothing, and the rotation completes when the job runs again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import delete, select

from idp.audit.models import AuditEvent
from idp.db import db
from idp.jobs.models import JobRun
from idp.jobs.service import run_job
from idp.keyring import service as keyring
from idp.keyring.models import KeyState, SigningKey
from idp.tokens.models import RevokedAccessToken
from tests.keys.conftest import (
    CACHE, GRACE, LEAD, PERIOD, keys_by_state, published_kids, served_after_cache_window, served_jwks, sign_token, verifies_with,
)
from tests.conftest import empty_broker
from tests.support import Process, free_port, wait_until

pytestmark = pytest.mark.slow


def send(app, job: str, now) -> None:
    app.extensions["celery"].send_task(f"idp.{job}", kwargs={"now": now.isoformat()})


def finished_runs(app, job: str) -> list[JobRun]:
    with app.app_context():
        db.session.remove()
        return list(db.session.scalars(select(JobRun).where(JobRun.job == job, JobRun.outcome != "running").order_by(JobRun.id)))


def run_via_worker(app, job: str, now) -> JobRun:
    """Send `job` to the worker and wait for its run to be recorded."""
    before = len(finished_runs(app, job))
    send(app, job, now)
    wait_until(lambda: len(finished_runs(app, job)) > before, timeout=60, what=f"the worker to run {job}")
    run = finished_runs(app, job)[-1]
    assert run.outcome == "succeeded", (run.outcome, run.error)
    return run


# --- end to end -------------------------------------------------------------------------------------


def test_worker_rotates_and_purges_on_schedule(app, celery_worker, t0):
    with app.app_context():
        before = {alg: keys_by_state(alg) for alg in keyring.ALGORITHMS}
        db.session.add_all([
            RevokedAccessToken(jti="expired", expires_at=t0 + PERIOD - timedelta(minutes=10)),
            RevokedAccessToken(jti="live", expires_at=t0 + PERIOD + timedelta(minutes=4)),
        ])
        db.session.commit()
    rotated = run_via_worker(app, "rotate_keys", t0 + PERIOD)
    assert (rotated.counts["activated"], rotated.counts["retired"], rotated.counts["created"]) == (2, 2, 2), rotated.counts
    purged = run_via_worker(app, "purge", t0 + PERIOD)
    assert purged.counts["revoked_access_tokens"] == 1
    with app.app_context():
        assert list(db.session.scalars(select(RevokedAccessToken.jti))) == ["live"]
        for alg in keyring.ALGORITHMS:
            assert keys_by_state(alg)["active"] == before[alg]["next"]
            assert keys_by_state(alg)["retired"] == before[alg]["active"]
    later = run_via_worker(app, "rotate_keys", t0 + PERIOD + GRACE + CACHE)
    assert later.counts["purged"] == 2
    with app.app_context():
        assert not keys_by_state()["retired"]


def test_tokens_signed_before_a_rotation_verify_through_the_jwks_until_they_expire_never_after_the_purge(app, celery_worker, live_server, t0):
    with app.app_context():
        # An ID token kept for logout (the longest-lived token), signed just before the rotation.
        token = sign_token("RS256", issued_at=t0 + PERIOD - timedelta(minutes=1), lifetime=7200)
    assert verifies_with(token, served_jwks(live_server))
    run_via_worker(app, "rotate_keys", t0 + PERIOD)
    served_after_cache_window([live_server], lambda jwks: len(json.loads(jwks)["keys"]) == 6, changed_at=time.monotonic())
    with app.app_context():
        assert keys_by_state("RS256")["retired"] == [token["kid"]]
    assert verifies_with(token, served_jwks(live_server))
    # Up to its expiry (and the verifiers' clock skew) the retired key stays published...
    run_via_worker(app, "rotate_keys", token["exp"] + timedelta(seconds=60))
    with app.app_context():
        assert token["kid"] in published_kids()
    assert verifies_with(token, served_jwks(live_server))
    # ...and once the grace is over it is purged, and the token never verifies again.
    run_via_worker(app, "rotate_keys", t0 + PERIOD + GRACE + CACHE)
    served_after_cache_window([live_server], lambda jwks: token["kid"] not in jwks, changed_at=time.monotonic())
    assert not verifies_with(token, served_jwks(live_server))


def test_the_web_keeps_signing_and_verifying_while_the_broker_is_down(app, start_server, t0):
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    base = start_server(IDP_CELERY_BROKER_URL=dead_broker)
    discovery = requests.get(base + "/.well-known/openid-configuration", timeout=5)
    assert discovery.status_code == 200 and discovery.json()["issuer"] == base
    assert requests.get(base + "/readyz", timeout=5).json()["database"] == "ok"
    with app.app_context():
        token = sign_token("ES256", issued_at=t0, lifetime=300)
    assert verifies_with(token, served_jwks(base))


# --- faults -----------------------------------------------------------------------------------------


class Scenario:
    """A keyring where rotation is due and a long-retired key awaits purge, restorable at will."""

    def __init__(self, app, t0):
        self.app = app
        self.now = t0 + PERIOD
        self.resent: set[int] = set()
        with app.app_context():
            for alg in keyring.ALGORITHMS:
                stale = keyring.generate_key(alg, KeyState.RETIRED, now=t0 - GRACE - timedelta(days=1))
                stale.retired_at = t0 - GRACE - CACHE
            db.session.commit()
            self.rows = [{c.key: getattr(k, c.key) for c in SigningKey.__table__.columns} for k in db.session.scalars(select(SigningKey))]
            self.before = {alg: keys_by_state(alg) for alg in keyring.ALGORITHMS}
            # Live tokens signed by the outgoing active keys shortly before the rotation.
            self.tokens = [sign_token(alg, issued_at=self.now - timedelta(minutes=2), lifetime=7200) for alg in keyring.ALGORITHMS]

    def reset(self) -> None:
        with self.app.app_context():
            for model in (SigningKey, AuditEvent, JobRun):
                db.session.execute(delete(model))
            db.session.execute(SigningKey.__table__.insert(), self.rows)
            db.session.commit()

    def check_invariants(self) -> dict[str, str]:
        """Assert the invariants; return per algorithm whether the rotation step is `before` or `after`."""
        phases = {}
        with self.app.app_context():
            db.session.remove()
            published = published_kids()
            for alg in keyring.ALGORITHMS:
                states = keys_by_state(alg)
                assert len(states["active"]) == 1 and len(states["next"]) <= 1, (alg, states)
                active = db.session.scalar(select(SigningKey).where(SigningKey.kid == states["active"][0]))
                assert active.kid in published
                assert active.created_at + LEAD <= self.now, "a key signs before relying parties could have it"
                old = self.before[alg]
                if states["active"] == old["active"]:
                    phases[alg] = "before"
                    assert states["next"] == old["next"]
                else:
                    phases[alg] = "after"  # promoted, retired and replaced in one step
                    assert states["active"] == old["next"]
                    assert old["active"][0] in states["retired"]
                    assert len(states["next"]) == 1 and states["next"] != old["next"]
            for token in self.tokens:
                assert token["kid"] in published, f"lost the key of a live {token['alg']} token"
                assert verifies_with(token, keyring.jwks().body)
        return phases

    def check_completed(self) -> None:
        assert set(self.check_invariants().values()) == {"after"}
        with self.app.app_context():
            retired = {kid for alg in keyring.ALGORITHMS for kid in keys_by_state(alg)["retired"]}
            assert retired == {self.before[alg]["active"][0] for alg in keyring.ALGORITHMS}  # the stale ones purged


@pytest.fixture
def faulty_worker(app, idp_env, tmp_path):
    """A real worker that pauses before the Nth write of its next task (see faulty_worker.py)."""
    marker, control, hold = tmp_path / "fault-marker", tmp_path / "fault-control", tmp_path / "fault-hold"
    env = {**idp_env, "FAULT_MARKER": str(marker), "FAULT_CONTROL": str(control), "FAULT_HOLD": str(hold),
           "PYTHONPATH": os.getcwd()}
    started: list[Process] = []

    def start() -> Process:
        process = Process(["worker", "--loglevel", "INFO", "--concurrency", "1"], env, tmp_path / f"faulty-worker-{len(started)}.log", module="tests.keys.faulty_worker")
        started.append(process)
        wait_until(lambda: "ready" in process.log() or process.popen.poll() is not None, timeout=60, what="the faulty worker to be ready")
        assert process.popen.poll() is None, process.log()
        return process

    def arm(pause_at: int, *, hold_redelivery: bool = False) -> None:
        marker.write_text("")
        control.write_text(str(pause_at))
        if hold_redelivery:
            hold.touch()

    def release() -> None:
        hold.unlink(missing_ok=True)

    def paused_pid() -> int | None:
        found = re.search(r"^PAUSED (\d+)$", marker.read_text(), re.M)
        return int(found.group(1)) if found else None

    start.arm, start.release, start.paused_pid, start.marker = arm, release, paused_pid, marker
    empty_broker(app)
    yield start
    for process in started:
        process.stop()
    empty_broker(app)


def crash_points(scenario: Scenario, faulty_worker) -> list[str]:
    """Run the rotation once without pausing; the writes and commits it makes, in order."""
    scenario.reset()
    faulty_worker.arm(0)
    send(scenario.app, "rotate_keys", scenario.now)
    wait_until(lambda: "DONE" in faulty_worker.marker.read_text(), timeout=60, what="a dry run of the rotation")
    scenario.check_completed()
    return [line.split(" ", 1)[1] for line in faulty_worker.marker.read_text().splitlines() if line[:1].isdigit()]


def rotation_succeeded(scenario: Scenario) -> bool:
    """A rotation run has succeeded; one skipped because the dead runner's lock had not been freed yet is sent again."""
    runs = finished_runs(scenario.app, "rotate_keys")
    if runs and runs[-1].outcome == "skipped" and runs[-1].id not in scenario.resent:
        scenario.resent.add(runs[-1].id)
        send(scenario.app, "rotate_keys", scenario.now)
    return any(run.outcome == "succeeded" for run in runs)


def transaction_edges(points: list[str]) -> list[int]:
    """The crash points that differ: before each transaction's first write, and just before its commit.

    A crash anywhere between a transaction's first write and its commit loses the same thing (the
    whole transaction), and a crash between a commit and the next first write is the same as a crash
    just before that write, so these points stand for every moment of the run.
    """
    edges, opening = [], True
    for n, point in enumerate(points, start=1):
        if opening or point.startswith("commit"):
            edges.append(n)
        opening = point.startswith("commit")
    return edges


# The crash points split into cases, so xdist spreads them: the first and last edge together (the
# earliest crash loses everything, the latest keeps the promotion, so between them they land on both
# sides of it), and the edges in between dealt round-robin into MIDDLE_PARTS cases.
MIDDLE_PARTS = 4
STEP_PARTS = ["first-and-last", *(f"middle-{part + 1}-of-{MIDDLE_PARTS}" for part in range(MIDDLE_PARTS))]


def edges_of_part(edges: list[int], part: str) -> list[int]:
    """The crash points (1-based) case `part` kills at; together the parts cover every edge once."""
    if part == "first-and-last":
        return [edges[0], edges[-1]]
    index = STEP_PARTS.index(part) - 1
    return edges[1:-1][index::MIDDLE_PARTS]


def test_every_crash_point_is_in_exactly_one_part_of_the_kill_at_every_step_test():
    for count in range(2, 40):
        edges = list(range(1, count + 1))
        dealt = sorted(n for part in STEP_PARTS for n in edges_of_part(edges, part))
        assert dealt == edges, count


@pytest.mark.parametrize("part", STEP_PARTS)
def test_killing_the_task_process_at_every_step_of_a_rotation_keeps_the_invariants(app, t0, faulty_worker, part):
    """SIGKILL the pool process running the rotation at each crash point; the worker redelivers it (acks_late)."""
    scenario = Scenario(app, t0)
    faulty_worker()
    points = crash_points(scenario, faulty_worker)
    # Per algorithm a promotion (retire, activate, publish a new next) and a purge, between the
    # job's own bookkeeping (and, on PostgreSQL, its advisory lock).
    writes = " | ".join(points)
    assert (writes.count("UPDATE signing_keys"), writes.count("INSERT INTO signing_keys"), writes.count("DELETE FROM signing_keys")) == (4, 2, 2), points
    edges = transaction_edges(points)
    # Enough edges that every middle part has crash points of its own.
    assert len(edges) >= 2 + MIDDLE_PARTS, points
    seen = set()
    for n in edges_of_part(edges, part):
        point = points[n - 1]
        scenario.reset()
        faulty_worker.arm(n, hold_redelivery=True)
        send(app, "rotate_keys", scenario.now)
        wait_until(lambda: faulty_worker.paused_pid() is not None, timeout=60, what=f"the rotation to pause before {point}")
        os.kill(faulty_worker.paused_pid(), signal.SIGKILL)
        # What the crash left, before the redelivered copy repairs it (on a loaded machine it could
        # finish before this look, which would then see `after` for a crash before the promotion).
        seen.update(scenario.check_invariants().values())
        faulty_worker.release()
        # Redelivered to a fresh pool process, the rotation completes; the dead run is closed.
        wait_until(lambda: rotation_succeeded(scenario), timeout=60, what=f"the redelivered rotation to finish (crash before #{n}: {point})")
        scenario.check_completed()
    if part == "first-and-last":
        assert seen == {"before", "after"}  # crashes landed on both sides of the promotion


@pytest.mark.parametrize("where", ["UPDATE signing_keys", "DELETE FROM signing_keys", "commit"])
def test_killing_the_whole_worker_mid_rotation_keeps_the_invariants(app, t0, faulty_worker, where):
    """Process.kill(): the worker and its pool die together (a lost node); the next run completes the rotation."""
    scenario = Scenario(app, t0)
    worker = faulty_worker()
    points = crash_points(scenario, faulty_worker)
    # The first promotion UPDATE, the first key purge, or the commit of the first promotion.
    first_write = next(i for i, p in enumerate(points, 1) if "UPDATE signing_keys" in p)
    n = {"UPDATE signing_keys": first_write,
         "DELETE FROM signing_keys": next(i for i, p in enumerate(points, 1) if p.startswith("write DELETE FROM signing_keys")),
         "commit": next(i for i, p in enumerate(points, 1) if i > first_write and p.startswith("commit"))}[where]
    scenario.reset()
    faulty_worker.arm(n)
    send(app, "rotate_keys", scenario.now)
    wait_until(lambda: faulty_worker.paused_pid() is not None, timeout=60, what=f"the rotation to pause before {points[n - 1]}")
    worker.kill()
    scenario.check_invariants()
    with app.app_context():
        # The next scheduled run, wherever it runs; skipped while the dead pool process's lock is
        # still being released (the kernel or PostgreSQL does that a moment after the kill).
        runs: list[JobRun] = []
        wait_until(lambda: runs.append(run_job("rotate_keys", now=scenario.now)) or runs[-1].outcome != "skipped", timeout=30,
                   what="the dead worker's lock to be released")
        assert runs[-1].outcome == "succeeded"
        interrupted = db.session.scalars(select(JobRun).where(JobRun.outcome == "failed")).all()
        assert [r.error for r in interrupted] == ["interrupted: the runner stopped before finishing"]
    scenario.check_completed()
