"""The README's "Connect your app" stays true: its commands run, its Authlib example signs a user in
against a real `idp serve`, and its scopes table is the scope vocabulary."""

from __future__ import annotations

import json
import re
import runpy
import threading
from pathlib import Path

import pytest
import requests
from flask import session
from werkzeug.serving import make_server

from idp.scopes import VOCABULARY
from tests.oidc.conftest import PASSWORD
from tests.oidc.flow import follow_to_client
from tests.support import free_port, invoke_idp
from tests.test_readme import README, section

SECTION = section("Connect your app")


def fenced(language: str) -> list[str]:
    """The bodies of the section's fenced blocks in `language`."""
    return re.findall(rf"^```{language}\n(.*?)^```", SECTION, flags=re.MULTILINE | re.DOTALL)


def test_the_scopes_table_is_the_scope_vocabulary():
    rows = re.findall(r"^\| `([a-z_]+)` \| (.*?) \| (.*?) \|$", SECTION, flags=re.MULTILINE)
    assert [name for name, _, _ in rows] == list(VOCABULARY)
    for name, claims, description in rows:
        assert re.findall(r"`([a-z_]+)`", claims) == list(VOCABULARY[name].claims), name
        assert description == VOCABULARY[name].description, name


def test_the_section_is_linked_from_the_command_table():
    assert "(#connect-your-app)" in README and "## Connect your app\n" in README


def test_the_registration_commands_work(app, idp_env):
    commands = [line.split("#", 1)[0].strip() for block in fenced("sh") for line in block.splitlines() if line.strip()]
    assert len(commands) == 3 and all(command.startswith(".venv/bin/idp clients ") for command in commands)
    created = []
    for command in commands[:2]:
        result = invoke_idp(split_words(command.removeprefix(".venv/bin/idp ")), idp_env)
        assert result.returncode == 0, result.stderr
        created.append(json.loads(result.stdout))
    assert created[0]["name"] == "My app" and created[0]["client_secret"].startswith("idp_cs_")
    assert created[1]["name"] == "My SPA" and "client_secret" not in created[1]
    update = commands[2].removeprefix(".venv/bin/idp ").replace("CLIENT_ID", created[0]["client_id"])
    result = invoke_idp(split_words(update), idp_env)
    assert result.returncode == 0 and "id_token_claims" in result.stdout, result.stderr


def split_words(command: str) -> list[str]:
    """A command line split as the shell would for these commands (double quotes, no escapes)."""
    return [word.strip('"') for word in re.findall(r'"[^"]*"|\S+', command)]


@pytest.fixture
def readme_app(tmp_path: Path, monkeypatch, shared_server, make_client):
    """The README's Authlib example, run as written, on a free loopback port; yields (base URL, client, module)."""
    source = next(block for block in fenced("python") if "authlib.integrations.flask_client" in block)
    (tmp_path / "app.py").write_text(source)

    def start(**client_settings):
        port = free_port()
        base = f"http://localhost:{port}"
        client, secret = make_client(name="README app", redirect_uris=[base + "/callback"], **client_settings)
        monkeypatch.setenv("OIDC_ISSUER", issuer)
        monkeypatch.setenv("OIDC_CLIENT_ID", client.client_id)
        monkeypatch.setenv("OIDC_CLIENT_SECRET", secret)
        monkeypatch.setenv("APP_SECRET_KEY", "a test-only secret for the example app")
        module = runpy.run_path(str(tmp_path / "app.py"))
        example = module["app"]
        # Only for the test: what the example stored from token["userinfo"].
        example.add_url_rule("/test-only/user", "test_user", lambda: dict(session.get("user") or {}))
        server = make_server("127.0.0.1", port, example, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return base

    servers: list = []
    issuer = shared_server()
    yield start
    for server in servers:
        server.shutdown()


def sign_in_through(base: str, email: str) -> requests.Session:
    """A browser that clicks the example's Sign in, signs in at the IdP, allows, and lands back."""
    browser = requests.Session()
    login = browser.get(base + "/login", allow_redirects=False, timeout=30)
    assert login.status_code == 302, login.text
    callback = follow_to_client(browser, login.headers["Location"], redirect_uri=base + "/callback", email=email, password=PASSWORD)
    assert browser.get(callback, allow_redirects=False, timeout=30).status_code == 302
    return browser


@pytest.mark.slow
def test_the_authlib_example_signs_a_user_in_with_name_and_email_from_the_id_token(readme_app, make_user):
    user = make_user(email="reader@example.com", name="Ada Reader")
    base = readme_app()
    browser = sign_in_through(base, user.email)
    assert browser.get(base + "/", timeout=30).text == "Signed in as Ada Reader (reader@example.com)"
    claims = browser.get(base + "/test-only/user", timeout=30).json()
    assert claims["sub"] == user.subject and claims["email_verified"] is False
    assert claims["preferred_username"] == user.email and isinstance(claims["updated_at"], int)


@pytest.mark.slow
def test_a_minimal_client_gets_only_the_sign_in_claims_in_authlib_userinfo(readme_app, make_user):
    user = make_user(email="lean@example.com", name="Lean Reader")
    base = readme_app(id_token_claims="minimal")
    browser = sign_in_through(base, user.email)
    claims = browser.get(base + "/test-only/user", timeout=30).json()
    assert claims["sub"] == user.subject
    assert not {"name", "email", "email_verified", "preferred_username", "updated_at"} & set(claims)
