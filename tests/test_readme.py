"""The README stays true: a two-command quick start, every setting documented, deployment described."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from idp.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SETTING_ROW = re.compile(r"^\| `IDP_([A-Z0-9_]+)` \| (.*?) \| (.*?) \|$", re.MULTILINE)


def section(title: str, text: str = README) -> str:
    """The body of the `## title` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def shell_commands(text: str) -> list[str]:
    """Commands in the fenced code blocks of `text`, without comments or blank lines."""
    commands = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command:
                commands.append(command)
    return commands


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9_-]*):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))


def test_quick_start_is_exactly_make_run_and_make_test():
    assert shell_commands(section("Quick start")) == ["make run", "make test"]
    assert {"run", "test"} <= make_targets()


def test_shell_commands_helper_sees_every_command():
    # The quick-start check above must be able to fail: a third command is noticed.
    extra = "## Quick start\n```sh\nmake run   # runs\n\nmake test\npip install idp\n```\n"
    assert shell_commands(section("Quick start", extra)) == ["make run", "make test", "pip install idp"]


def test_every_setting_is_in_the_configuration_table_and_nothing_else():
    rows = {name: (default, doc) for name, default, doc in SETTING_ROW.findall(section("Configuration"))}
    names = [setting.name for setting in SETTINGS]
    assert sorted(set(names) - set(rows)) == [], "settings missing from the README's configuration table"
    assert sorted(set(rows) - set(names)) == [], "README documents settings idp/config.py does not have"
    for setting in SETTINGS:
        if not callable(setting.default) and setting.default is not None:
            shown = str(setting.default).lower() if isinstance(setting.default, bool) else setting.default  # as typed in the environment
            assert rows[setting.name][0] == f"`{shown}`", f"IDP_{setting.name}: README default differs"


@pytest.mark.parametrize(
    "phrase",
    ["docker compose up -d", "Running N replicas", "IDP_TRUSTED_PROXIES", "TLS_CERT_DIR", "exactly one", "IDP_ISSUER", "https", "TLS", ".env.example",
     "IDP_SECRET_KEY", "IDP_KEY_ENCRYPTION_KEYS", "POSTGRES_PASSWORD", "REDIS_PASSWORD"],
)
def test_production_deployment_section_covers(phrase):
    assert phrase in section("Production deployment")


def test_deployment_section_names_every_compose_service():
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    text = section("Production deployment")
    for name in services:
        assert f"`{name}`" in text, name


@pytest.mark.parametrize("phrase", ["docker-compose.replicas.yml", "WEB_REPLICAS", "Exactly one beat", "Many workers", "restart proxy",
                                    "IDP_TRUSTED_PROXIES", "IDP_SECRET_KEY", "must agree"])
def test_running_n_replicas_section_covers(phrase):
    assert phrase in section("Running N replicas")
