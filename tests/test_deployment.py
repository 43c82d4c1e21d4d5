"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The compose file is interpolated the way Compose does it, then validated against the official
Compose Specification schema (vendored in tests/data/compose-spec/). Every command the
deployment runs in the idp image is parsed by the real `idp` click group, so a renamed command
or option fails here rather than in production. The image's healthcheck command runs for real
against `idp serve`, and the wheel the image installs is built from exactly the files the
Dockerfile copies, installed into a fresh venv from the locked wheels and run.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path
from typing import Iterator

import click
import jsonschema
import pytest
import requests
import yaml

from idp.cli import cli
from tests.conftest import SHM
from tests.support import free_port, invoke_idp, stop_process_group, wait_until

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
REPLICAS_FILE = ROOT / "docker-compose.replicas.yml"
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "idp.conf.template"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec" / "compose-spec.json"
DOCKERIGNORE = ROOT / ".dockerignore"

REQUIRED_VARIABLES = ("IDP_ISSUER", "IDP_SECRET_KEY", "IDP_KEY_ENCRYPTION_KEYS", "POSTGRES_PASSWORD", "REDIS_PASSWORD",
                      "IDP_SERVER_NAME", "TLS_CERT_DIR")
# What an operator's .env holds (placeholders; nothing here is a real secret).
DEPLOY_ENV = {
    "IDP_ISSUER": "https://login.example.com",
    "IDP_SECRET_KEY": "0" * 64,
    "IDP_KEY_ENCRYPTION_KEYS": "A" * 43 + "=",
    "POSTGRES_PASSWORD": "1" * 48,
    "REDIS_PASSWORD": "2" * 48,
    "IDP_SERVER_NAME": "login.example.com",
    "TLS_CERT_DIR": "/srv/idp/tls",
}
IDP_SERVICES = {"migrate", "web", "worker", "beat"}


# --- Compose interpolation (Compose Specification, "Interpolation") ------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<invalid>))"
)


class InterpolationError(ValueError):
    """A required variable is unset (`${VAR:?message}`), or the syntax is invalid."""


def interpolate_string(value: str, environ: dict[str, str]) -> str:
    """Resolve $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, $$."""

    def replace(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("invalid") is not None:
            raise InterpolationError(f"invalid interpolation in {value!r}")
        name = match.group("named") or match.group("braced")
        op, arg = match.group("op"), match.group("arg") or ""
        is_set = name in environ
        present = is_set and environ[name] != ""
        if op in (":-", "-"):
            return environ[name] if (present if op == ":-" else is_set) else arg
        if op in (":?", "?"):
            if not (present if op == ":?" else is_set):
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return environ[name]
        if op in (":+", "+"):
            return arg if (present if op == ":+" else is_set) else ""
        return environ.get(name, "")

    return _VARIABLE.sub(replace, value)


def interpolate(node, environ: dict[str, str]):
    """Interpolate every string value of a loaded compose document."""
    if isinstance(node, dict):
        return {key: interpolate(value, environ) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, environ) for item in node]
    if isinstance(node, str):
        return interpolate_string(node, environ)
    return node


class RecordingEnviron(dict):
    """An environment that notes every variable name looked up in it."""

    def __init__(self, values: dict[str, str], seen: set[str]):
        super().__init__(values)
        self.seen = seen

    def __contains__(self, name):
        self.seen.add(name)
        return super().__contains__(name)

    def get(self, name, default=None):
        self.seen.add(name)
        return super().get(name, default)


def merge(base, override):
    """Compose's merge of a later file into an earlier one, for mappings (Compose Specification, "Merge")."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{key: merge(base[key], value) if key in base else value for key, value in override.items()}}
    return override


def load_compose(environ: dict[str, str] | None = None, *overlays: Path) -> dict:
    """docker-compose.yml (then each overlay file) as Compose sees it with `environ` (anchors and merge keys resolved)."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for overlay in overlays:
        raw = merge(raw, yaml.safe_load(overlay.read_text()))
    return interpolate(raw, DEPLOY_ENV if environ is None else environ)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture
def compose() -> dict:
    return load_compose()


def schema_errors(validator, document) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


# --- the `idp` command line -------------------------------------------------------------------------


def parse_idp_command(argv: list[str]) -> tuple[str, dict]:
    """Parse argv with the real click group; return the command path and its parsed parameters.

    Raises click.UsageError (or a subclass) when a command or option does not exist or a value
    does not convert, exactly as `idp` itself would refuse it.
    """
    if not argv or argv[0] != "idp":
        raise click.UsageError(f"not an idp command: {argv!r}")
    command, args, path = cli, list(argv[1:]), ["idp"]
    while isinstance(command, click.Group):
        if not args or args[0].startswith("-"):
            raise click.UsageError(f"{' '.join(path)} needs a subcommand")
        name = args.pop(0)
        sub = command.get_command(click.Context(command), name)
        if sub is None:
            raise click.UsageError(f"no such command: {' '.join(path)} {name}")
        command, path = sub, [*path, name]
    context = command.make_context(" ".join(path), args)
    return " ".join(path[1:]), context.params


# --- Dockerfile -------------------------------------------------------------------------------------


def dockerfile_instructions(stage: str = "final") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final (or "all") stage, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    instructions = [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]
    if stage == "all":
        return instructions
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def dockerfile(name: str) -> list[str]:
    return [args for instruction, args in dockerfile_instructions() if instruction == name]


def copied_sources() -> list[str]:
    """What the Dockerfile's COPY lines take from the build context (not from another stage)."""
    sources = []
    for instruction, args in dockerfile_instructions("all"):
        words = args.split()
        if instruction == "COPY" and not any(word.startswith("--from") for word in words):
            sources += [word for word in words[:-1] if not word.startswith("--")]
    return sources


def dockerignored(relative: str, patterns: list[str]) -> bool:
    """True when .dockerignore excludes the path or one of its parents (`**/` matches any depth)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        tail = pattern[3:] if pattern.startswith("**/") else None
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern) or (tail and fnmatch.fnmatchcase(prefix.rsplit("/", 1)[-1], tail)):
                return True
    return False


def build_context(destination: Path) -> list[str]:
    """Copy exactly the files the Dockerfile's COPY lines name, less .dockerignore; their paths."""
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    copied = []
    for source in copied_sources():
        path = ROOT / source
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            relative = file.relative_to(ROOT).as_posix()
            if not dockerignored(relative, patterns):
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, destination / relative)
                copied.append(relative)
    return copied


def runtime_closure(requirements: list[str], environment: dict[str, str] | None = None) -> set[str]:
    """Names of `requirements` and everything they pull in (extras and markers honoured), from installed metadata.

    `environment` overrides marker variables (another Python release, say). A name this venv lacks
    is returned without what it pulls in: its metadata is not here.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [(Requirement(line), ("",)) for line in requirements]
    while todo:
        requirement, extras = todo.pop()
        if requirement.marker and not any(requirement.marker.evaluate({**(environment or {}), "extra": extra})
                                          for extra in extras):
            continue
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            pulled = distribution(key[0]).requires or []
        except PackageNotFoundError:
            pulled = []
        todo += [(Requirement(line), ("", *requirement.extras)) for line in pulled]
    return {name for name, _ in seen}


def runtime_part_of_lock(lock: str, requirements: list[str]) -> str:
    """The lock's entries (pins and hashes) of the runtime closure: what the image's `pip install idp` takes."""
    from packaging.utils import canonicalize_name

    wanted = runtime_closure(requirements)
    entries = re.finditer(r"^([A-Za-z0-9_.-]+)==.*?(?=^\S|\Z)", lock, flags=re.MULTILINE | re.DOTALL)
    return "".join(entry.group(0) for entry in entries if canonicalize_name(entry.group(1)) in wanted)


def healthcheck_exec(args: str) -> list[str]:
    """The exec-form command of a HEALTHCHECK instruction (after its --options)."""
    return json.loads(args[args.index("CMD") + len("CMD"):].strip())


# --- tests: compose file ------------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification(validator, compose):
    assert "${" not in json.dumps(compose)  # fully interpolated, as Compose validates it
    assert schema_errors(validator, compose) == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda doc: doc["services"]["web"].update(comand=["idp", "serve"]),  # unknown key
        lambda doc: doc["services"]["web"]["depends_on"]["migrate"].update(condition="service_done"),
        lambda doc: doc["services"]["web"].update(ports="8000:8000"),  # must be a list
        lambda doc: doc["services"]["postgres"]["healthcheck"].update(interval=5),  # must be a duration string
        lambda doc: doc.update(volume={"postgres-data": None}),  # unknown top-level key
    ],
    ids=["unknown-service-key", "unknown-depends-on-condition", "ports-not-a-list", "interval-not-a-string", "unknown-top-level-key"],
)
def test_schema_rejects_an_invalid_compose_document(validator, compose, breakage):
    broken = copy.deepcopy(compose)
    breakage(broken)
    assert schema_errors(validator, broken)


def test_services_volumes_and_start_order(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "proxy", *IDP_SERVICES}
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services[name]["restart"] == "unless-stopped"
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["migrate"]["restart"] == "no"
    for name in ("postgres", "redis", "web"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    # State lives in named volumes declared at the top level; host paths are read-only configuration.
    mounts = {name: [volume.split(":")[0] for volume in service.get("volumes", []) if not volume.endswith(":ro")]
              for name, service in services.items()}
    assert mounts["postgres"] == ["postgres-data"] and mounts["redis"] == ["redis-data"] and mounts["proxy"] == []
    assert {source for sources in mounts.values() for source in sources} <= set(compose["volumes"])
    assert "deploy" not in services["beat"] and "scale" not in services["beat"]  # exactly one beat


def test_idp_services_run_the_project_image_as_non_root(compose):
    for name in IDP_SERVICES:
        service = compose["services"][name]
        assert service["build"] == ".", name
        assert service["image"] == "idp:latest", name
        assert service["user"].split(":")[0] not in {"0", "root"}, name
        assert service["read_only"] is True and "ALL" in service["cap_drop"], name


def test_every_secret_comes_from_the_environment_and_is_required():
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    environment = raw["services"]["web"]["environment"]
    assert environment["IDP_SECRET_KEY"].startswith("${IDP_SECRET_KEY:?")
    assert environment["IDP_KEY_ENCRYPTION_KEYS"].startswith("${IDP_KEY_ENCRYPTION_KEYS:?")
    assert environment["IDP_ISSUER"].startswith("${IDP_ISSUER:?")
    assert "${POSTGRES_PASSWORD:?" in environment["IDP_DATABASE_URL"]
    assert "${REDIS_PASSWORD:?" in environment["IDP_CELERY_BROKER_URL"]
    for variable in REQUIRED_VARIABLES:
        missing = {key: value for key, value in DEPLOY_ENV.items() if key != variable}
        with pytest.raises(InterpolationError, match=variable):
            load_compose(missing)
        with pytest.raises(InterpolationError, match=variable):
            load_compose({**missing, variable: ""})
    # Nothing secret-looking is written into the file itself.
    text = COMPOSE_FILE.read_text()
    for value in DEPLOY_ENV.values():
        assert value not in text


def test_env_example_documents_every_variable_without_values():
    text = (ROOT / ".env.example").read_text()
    referenced = set()
    interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), RecordingEnviron(DEPLOY_ENV, referenced))
    assert set(REQUIRED_VARIABLES) <= referenced
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert referenced <= documented, referenced - documented
    for variable in ("IDP_SECRET_KEY", "IDP_KEY_ENCRYPTION_KEYS", "POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        assert re.search(rf"^{variable}=$", text, flags=re.MULTILINE), f"{variable} must be left empty in .env.example"


def test_the_issuer_the_file_passes_is_the_operators(compose):
    for name in IDP_SERVICES:
        assert compose["services"][name]["environment"]["IDP_ISSUER"] == DEPLOY_ENV["IDP_ISSUER"]
        assert compose["services"][name]["environment"]["IDP_DATABASE_URL"].startswith("postgresql://idp:")


def test_only_the_proxy_is_published_and_serves_the_shipped_nginx_config(compose):
    services = compose["services"]
    assert [name for name, service in services.items() if service.get("ports")] == ["proxy"]
    proxy = services["proxy"]
    assert proxy["ports"] == ["443:443", "80:80"]
    assert services["web"]["environment"]["IDP_TRUSTED_PROXIES"] == "1"
    assert all("IDP_TRUSTED_PROXIES" not in services[name]["environment"] for name in IDP_SERVICES - {"web"})
    template_mount, tls_mount = proxy["volumes"]
    assert template_mount == "./deploy/nginx/idp.conf.template:/etc/nginx/templates/idp.conf.template:ro"
    assert (ROOT / template_mount.split(":")[0]).is_file() and tls_mount == "/srv/idp/tls:/etc/nginx/tls:ro"
    # Every variable of the template is set for the nginx image's envsubst, to what the app serves.
    assert set(re.findall(r"\$\{([A-Z_]+)\}", NGINX_TEMPLATE.read_text())) <= set(proxy["environment"])
    assert proxy["environment"]["IDP_PUBLIC_ORIGIN"] == DEPLOY_ENV["IDP_ISSUER"]
    assert proxy["environment"]["IDP_UPSTREAM"] == "web:8000"
    assert proxy["depends_on"]["web"] == {"condition": "service_healthy"}


def test_the_replicas_file_runs_three_web_replicas_many_workers_and_one_beat(validator):
    scaled = load_compose(None, REPLICAS_FILE)
    assert schema_errors(validator, scaled) == []
    services = scaled["services"]
    assert services["web"]["deploy"]["replicas"] == "3" and services["worker"]["deploy"]["replicas"] == "2"
    assert "deploy" not in services["beat"] and "deploy" not in services["proxy"]
    assert services["web"]["command"] == load_compose()["services"]["web"]["command"]  # the base file still applies
    assert load_compose({**DEPLOY_ENV, "WEB_REPLICAS": "5"}, REPLICAS_FILE)["services"]["web"]["deploy"]["replicas"] == "5"


# --- tests: commands exist in the CLI ---------------------------------------------------------------


def test_every_compose_command_exists_in_the_cli(compose):
    parsed = {name: parse_idp_command(compose["services"][name]["command"]) for name in IDP_SERVICES}
    assert {name: path for name, (path, _) in parsed.items()} == {"migrate": "init", "web": "serve", "worker": "worker", "beat": "beat"}
    assert parsed["web"][1]["host"] == "0.0.0.0" and parsed["web"][1]["port"] == 8000
    assert parsed["web"][1]["workers"] == 2 and parsed["worker"][1]["concurrency"] == 2


def test_dockerfile_cmd_exists_in_the_cli():
    (cmd,) = dockerfile("CMD")
    path, params = parse_idp_command(json.loads(cmd))
    assert path == "serve" and params["host"] == "0.0.0.0" and params["port"] == 8000


@pytest.mark.parametrize(
    "argv",
    [["idp", "serv"], ["idp", "serve", "--bogus"], ["idp", "serve", "--port", "eighty"], ["idp", "db"], ["idp", "init", "extra"], ["gunicorn", "idp:app"]],
)
def test_the_command_check_refuses_what_idp_would_refuse(argv):
    with pytest.raises(click.UsageError):
        parse_idp_command(argv)


# --- tests: Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_is_production_shaped():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    (user,) = dockerfile("USER")
    assert user.split(":")[0] not in {"0", "root"}
    assert dockerfile("EXPOSE") == ["8000"]
    assert any("pip install --no-index" in run for run in dockerfile("RUN"))
    # No secret baked in: secrets are never set by the image, only by the environment at run time.
    for instruction, args in instructions:
        if instruction in {"ENV", "ARG"}:
            assert not re.search(r"SECRET|PASSWORD|KEY_ENCRYPTION|TOKEN", args), args


def test_image_and_compose_healthchecks_probe_healthz_with_the_standard_library(compose):
    (healthcheck,) = dockerfile("HEALTHCHECK")
    image_probe = healthcheck_exec(healthcheck)
    assert image_probe[:2] == ["python", "-c"] and "/healthz" in image_probe[2]
    assert compose["services"]["web"]["healthcheck"]["test"] == ["CMD", *image_probe]


def test_healthcheck_command_passes_on_a_live_server_and_fails_without_one(shared_server):
    live_server = shared_server()
    (healthcheck,) = dockerfile("HEALTHCHECK")
    code = healthcheck_exec(healthcheck)[2]
    assert "http://127.0.0.1:8000/" in code
    up = subprocess.run([sys.executable, "-c", code.replace("http://127.0.0.1:8000", live_server)], capture_output=True, timeout=30)
    assert up.returncode == 0, up.stderr
    down = subprocess.run([sys.executable, "-c", code.replace("8000", str(free_port()))], capture_output=True, timeout=30)
    assert down.returncode != 0


def test_migrate_service_init_writes_no_local_secret_with_secrets_in_the_environment(app, idp_env, tmp_path):
    """What the `migrate` service runs: `idp init` with IDP_SECRET_KEY and IDP_KEY_ENCRYPTION_KEYS set."""
    from idp.db import db
    from idp.models import SigningKey

    with app.app_context():
        db.session.execute(SigningKey.__table__.delete())
        db.session.commit()
    keys_dir = tmp_path / "keys-of-the-container"
    env = {**idp_env, "IDP_KEYS_DIR": str(keys_dir)}
    first = invoke_idp(["init"], env)  # in-process; tests/functional/test_cli.py runs `idp init` for real
    assert first.returncode == 0, first.stderr
    assert "signing keys: 4 created" in first.stdout and "WARNING" not in first.stderr
    second = invoke_idp(["init"], env)
    assert second.returncode == 0 and "already present" in second.stdout
    assert not keys_dir.exists()


# --- tests: the image's wheel, built from the image's build context ------------------------------


def test_dockerignore_matching():
    patterns = ["**/__pycache__", "*.egg-info", "tests"]
    assert dockerignored("idp/oauth/__pycache__/views.cpython-311.pyc", patterns)
    assert dockerignored("idp.egg-info/PKG-INFO", patterns) and dockerignored("tests/conftest.py", patterns)
    assert not dockerignored("idp/oauth/views.py", patterns) and not dockerignored("admin_ui/tests.txt", patterns)


@pytest.fixture
def state_folder(tmp_path) -> Iterator[Path]:
    """The image's state folder (/var/lib/idp) for the wheel's `idp`: on tmpfs when the machine has one.

    Its SQLite database syncs the disk on every commit, and `idp init` migrates and makes keys: tens
    of commits, a second or more on a loaded machine's disk.
    """
    if not SHM.is_dir():
        (tmp_path / "run").mkdir()
        yield tmp_path / "run"
        return
    path = Path(tempfile.mkdtemp(prefix="idp-wheel-state-", dir=SHM))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_wheel_from_the_dockerfile_context_installs_and_serves(tmp_path, state_folder):
    """What the image runs: the wheel of exactly the copied files, from the locked wheels, no source tree."""
    context, dist, wheels = tmp_path / "context", tmp_path / "dist", tmp_path / "wheels"
    copied = build_context(context)
    assert "requirements.lock" in copied and "pyproject.toml" in copied and not any(path.startswith("tests/") for path in copied)
    # The Dockerfile's build stage: the lock matches pyproject.toml (its first step); the locked
    # wheels, hash-checked; the project (sdist, and the wheel built from that sdist) with the
    # locked build backend. Independent steps, so they run at once here.
    # (Only the runtime part of the lock, to save time: the test extra's wheels stay in the image's
    # build stage anyway. After the first run, from the locked wheels that run kept, hash-checked again.)
    runtime = tmp_path / "runtime.lock"
    runtime.write_text(runtime_part_of_lock((context / "requirements.lock").read_text(),
                                            tomllib.loads((context / "pyproject.toml").read_text())["project"]["dependencies"]))
    assert "gunicorn==" in runtime.read_text() and "playwright==" not in runtime.read_text()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    sources, kept = locked_wheel_sources(runtime)
    run_at_once(tmp_path, timeout=300, commands=[
        [sys.executable, str(context / "tools" / "lockfile.py"), "check"],
        [*pip, "wheel", "--quiet", "--require-hashes", "--no-deps", *sources, "--wheel-dir", str(wheels), "-r", str(runtime)],
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(context)],
    ])
    keep_locked_wheels(wheels, kept, runtime.read_text())
    (wheel,) = dist.glob("idp-*.whl")
    assert len(list(dist.glob("idp-*.tar.gz"))) == 1
    # The run stage: a fresh venv, not editable, from those wheels only.
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)  # this pip installs into it (--python): no ensurepip, no bytecode, faster
    subprocess.run([*pip, "--python", str(fresh / "bin" / "python"), "install", "--quiet", "--no-compile", "--no-index",
                    "--find-links", str(wheels), str(wheel)], check=True, timeout=300)
    port, workdir = free_port(), state_folder
    env = {"PATH": f"{fresh / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "IDP_ISSUER": f"http://127.0.0.1:{port}", "IDP_LOG_LEVEL": "WARNING",
           "IDP_INSTANCE_DIR": str(workdir / "instance"), "IDP_KEYS_DIR": str(workdir / "keys"), "XDG_RUNTIME_DIR": str(tmp_path)}
    init = subprocess.run(["idp", "init"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    assert "signing keys: 4 created" in init.stdout
    server = subprocess.Popen(["idp", "serve", "--port", str(port), "--workers", "1"], cwd=workdir, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/readyz"), timeout=60, what="the wheel's idp serve")
        # A page of each packaged part: templates of idp and of admin_ui, admin_ui's static files.
        login = requests.get(f"http://127.0.0.1:{port}/admin/login", timeout=10)
        assert login.status_code == 200 and "csrf_token" in login.text
        # The shared stylesheet the page links (idp/ui/static), and admin_ui's own static files.
        css = re.search(r'href="(/[^"]+\.css[^"]*)"', login.text)
        assert css and requests.get(f"http://127.0.0.1:{port}{css.group(1)}", timeout=10).status_code == 200
        for packaged in ("/admin/static/admin.css", "/admin/static/admin.js"):
            assert requests.get(f"http://127.0.0.1:{port}{packaged}", timeout=10).status_code == 200, packaged
    finally:
        stop_process_group(server)
    site = next((fresh / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("__editable__*")) and (site / "admin_ui" / "__init__.py").exists()


# The runtime lock's wheels as an earlier run fetched them, in a folder named by the lock's digest.
# pip checks each against the lock's hashes again, but takes it from there instead of resolving
# every pin on the index (about 3 s of CPU, most of it weighing every release's links).
LOCKED_WHEELS_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "idp-tests" / "locked-wheels"


def locked_wheel_sources(runtime: Path) -> tuple[list[str], Path]:
    """The pip options that fetch the wheels of `runtime` (the kept ones when there are), and where they are kept."""
    kept = LOCKED_WHEELS_CACHE / hashlib.sha256(runtime.read_bytes()).hexdigest()
    return (["--no-index", "--find-links", str(kept)] if kept.is_dir() else []), kept


def keep_locked_wheels(wheels: Path, kept: Path, lock: str) -> None:
    """Keep the fetched wheels for the next run, if each is a locked file (none was built from an sdist).

    Into place in one rename, since another run may keep the same wheels at the same time.
    """
    fetched = sorted(wheels.glob("*.whl"))
    if kept.is_dir() or not all(hashlib.sha256(wheel.read_bytes()).hexdigest() in lock for wheel in fetched):
        return
    staging = None
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=kept.parent))
        for wheel in fetched:
            shutil.copy2(wheel, staging)
        staging.rename(kept)
    except OSError:  # kept by another run meanwhile, or no writable cache: the next run fetches them again
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def run_at_once(folder: Path, timeout: float, commands: list[list[str]]) -> None:
    """Run independent commands in parallel; each must succeed (its output is shown when it does not)."""
    running = []
    for number, command in enumerate(commands):
        output = open(folder / f"step-{number}.log", "w+")
        running.append((command, output, subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)))
    for command, output, process in running:
        with output:
            returncode = process.wait(timeout=timeout)
            output.seek(0)
            assert returncode == 0, f"{command} failed:\n{output.read()[-3000:]}"


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.mark.parametrize("python", ["3.11.0", platform.python_version()])
def test_the_lock_pins_every_requirement_on_each_python_311_release(python):
    """`make` installs the lock with --require-hashes, so a requirement missing from it stops the install.

    pip-compile leaves out what a marker keeps off its own interpreter: redis needs async-timeout
    below Python 3.11.3 (Debian 12's python3 is 3.11.2), and a lock made on 3.11.7 lacked it.
    """
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    release = {"python_full_version": python, "python_version": python.rsplit(".", 1)[0]}
    locked = {canonicalize_name(name)
              for name in re.findall(r"^([A-Za-z0-9_.-]+)==", (ROOT / "requirements.lock").read_text(), flags=re.MULTILINE)}
    assert runtime_closure(requirements, release) - locked == set()


def test_a_lock_out_of_date_with_pyproject_fails_with_one_line(tmp_path):
    """What `make test`, `make run` and CI run before installing (tools/lockfile.py check)."""
    for name in ("pyproject.toml", "requirements.lock", "tools/lockfile.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    check = [sys.executable, str(tmp_path / "tools" / "lockfile.py"), "check"]
    current = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert current.returncode == 0, current.stderr  # the committed lock matches pyproject.toml
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"requests>=2.32,<3"', '"requests>=2.32,<3",\n    "hypothesis>=6,<7"'))
    stale = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert stale.returncode == 1
    assert stale.stderr == "error: requirements.lock is out of date with pyproject.toml; run `make lock` and commit requirements.lock\n"
    # Every pinned requirement carries a hash, and no machine-local index or path is recorded.
    lock = (ROOT / "requirements.lock").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==\S+ \\\n\s+--hash=sha256:", lock, flags=re.MULTILINE)
    assert {"flask", "authlib", "gunicorn", "pytest", "setuptools"} <= {pin.lower() for pin in pins}
    assert len(pins) == len(re.findall(r"^\S+==", lock, flags=re.MULTILINE))
    assert "--index-url" not in lock and "--find-links" not in lock and "file://" not in lock
