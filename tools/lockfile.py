"""The lock file, requirements.lock: written by `make lock`, checked before every install.

The lock records a digest of pyproject.toml's dependency lists in its first line, so an install
from a lock that no longer matches pyproject.toml stops with one line saying how to refresh it.
Standard library only: it runs before anything is installed.

    python3 tools/lockfile.py check
    python3 tools/lockfile.py write --pip-compile .venv-lock/bin/pip-compile
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
DIGEST_PREFIX = "# pyproject-digest: "
REFRESH_HINT = "run `make lock` and commit requirements.lock"


def pyproject_digest(pyproject: Path = PYPROJECT) -> str:
    """sha256 of the build requirements, dependencies and extras: what the lock is resolved from."""
    data = tomllib.loads(pyproject.read_text())
    project = data.get("project", {})
    inputs = {
        "build-system": data.get("build-system", {}).get("requires", []),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "requires-python": project.get("requires-python"),
    }
    return "sha256:" + hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path = LOCK) -> str | None:
    """The digest the lock was written for, or None when there is no lock or no digest line."""
    if not lock.exists():
        return None
    first = lock.read_text().split("\n", 1)[0]
    return first[len(DIGEST_PREFIX):].strip() if first.startswith(DIGEST_PREFIX) else None


def check(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> str | None:
    """None when the lock matches pyproject.toml, else the one-line error."""
    if recorded_digest(lock) != pyproject_digest(pyproject):
        return f"error: {lock.name} is out of date with {pyproject.name}; {REFRESH_HINT}"
    return None


def write(pip_compile: str) -> int:
    """Resolve pyproject.toml (runtime, test extra, build backend) with hashes, then stamp the digest."""
    body = LOCK.read_text().split("\n", 1)[1] if recorded_digest() else None
    if body is not None:
        LOCK.write_text(body)  # pip-compile keeps the pins it finds; it must not see our line
    # Relative paths and no index options: the header must not name this machine's paths or indexes.
    compiled = subprocess.run(
        [pip_compile, "--quiet", "--extra", "test", "--all-build-deps", "--allow-unsafe", "--generate-hashes",
         "--strip-extras", "--no-emit-index-url", "--no-emit-find-links",
         "--output-file", LOCK.name, PYPROJECT.name],
        cwd=ROOT, env={**os.environ, "CUSTOM_COMPILE_COMMAND": "make lock"},
    )
    if compiled.returncode != 0:
        print(f"error: pip-compile failed; {LOCK.name} is left without its digest line", file=sys.stderr)
        return 1
    LOCK.write_text(f"{DIGEST_PREFIX}{pyproject_digest()}\n{LOCK.read_text()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`check` (exit 1 with one line when stale) or `write`."""
    parser = argparse.ArgumentParser(prog="lockfile.py")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check")
    writer = commands.add_parser("write")
    writer.add_argument("--pip-compile", default="pip-compile")
    args = parser.parse_args(argv)
    if args.command == "write":
        return write(args.pip_compile)
    error = check()
    if error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
