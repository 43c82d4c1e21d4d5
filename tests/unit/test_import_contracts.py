"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and would catch a break."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
ENTRY_POINTS = {"idp.cli", "idp.manage", "idp.processes", "idp.celery_app", "idp.jobs.cli", "idp.keyring.cli"}


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """`lint-imports` run in `cwd`, as CI runs it (it reads cwd/pyproject.toml)."""
    return subprocess.run([str(LINT_IMPORTS)], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_every_import_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_back_up_the_layers_breaks_the_contract(tmp_path):
    """A copy of the tree where a domain service imports the lifecycle layer above it fails the check."""
    for name in ("idp", "admin_ui"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "templates", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "idp" / "users" / "service.py", "a") as module:
        module.write("\nfrom idp.signout import end_everything  # noqa: E402,F401\n")

    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "idp.users.service -> idp.signout" in result.stdout


def test_only_the_entry_points_import_the_composition_root():
    """admin_ui and every feature reach shared extensions through idp.extensions, never through idp/__init__."""
    graph = grimp.build_graph("idp", "admin_ui")
    assert graph.find_modules_that_directly_import("idp") == ENTRY_POINTS


def test_no_import_cycles():
    """No module reaches itself by following imports (function-level ones included)."""
    graph = grimp.build_graph("idp", "admin_ui")
    cycles = [
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.find_shortest_chain(importer=imported, imported=importer)
    ]
    assert cycles == []
