"""The shipped nginx config (deploy/nginx/idp.conf.template) terminating TLS in front of real replicas.

Debian's nginx runs the template rendered the way the nginx image renders it, with a certificate
made here for `idp.test` (never committed), in front of two `idp serve` replicas on one
PostgreSQL database with IDP_TRUSTED_PROXIES=1. Headless Chromium maps `idp.test` to loopback
(--host-resolver-rules) and signs in through it: authorize, login, consent, account, logout, the
admin UI; the relying party's back-channel calls (token, userinfo) and a client connecting from
127.0.0.3 go through the same proxy with Python, trusting the test CA.
"""

from __future__ import annotations

import datetime
import re
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import expect
from sqlalchemy import select

from idp.db import db
from idp.models import AuditEvent, UserSession
from tests.browser_support import TEST_HOST, chromium  # noqa: F401  (chromium: a fixture, the process's one browser)
from tests.conftest import POSTGRES_URL, require_service
from tests.oidc.conftest import PASSWORD
from tests.oidc.flow import csrf_token, pkce_pair
from tests.support import free_port, stop_process_group, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "idp.conf.template"
HOST = TEST_HOST  # the shared Chromium resolves it to loopback (tests/browser_support.py)
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


# --- a CA and a certificate for idp.test, made per test ---------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls_files(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for HOST signed by it (PEM files)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("idp test CA")).issuer_name(_name("idp test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(_name(HOST)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    files = {"ca": folder / "ca.pem", "certificate": folder / "fullchain.pem", "key": folder / "key.pem"}
    files["ca"].write_bytes(ca.public_bytes(pem))
    files["certificate"].write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    files["key"].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    files["key"].chmod(0o600)
    return files


# --- nginx from Debian's package, running the shipped template -------------------------------------


def render_template(values: dict[str, str]) -> str:
    """envsubst as the nginx image runs it: only the ${NAME}s that are set are replaced."""
    text = re.sub(r"\$\{([A-Z_]+)\}", lambda match: values.get(match.group(1), match.group(0)), TEMPLATE.read_text())
    assert not re.search(r"\$\{[A-Z_]+\}", text), "the template names a variable the deployment does not set"
    return text


def main_config(prefix: Path, site: Path) -> str:
    """What the nginx image's own nginx.conf provides around conf.d/ (paths under `prefix`)."""
    return f"""
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


@pytest.fixture
def nginx(tmp_path):
    """start(upstreams, tls, https_port) -> http port; nginx is stopped after the test."""
    require_service("nginx", Path(NGINX).exists(), hint="apt-get install nginx")
    started = []

    def start(upstreams: list[str], tls: dict[str, Path], https_port: int) -> int:
        http_port = free_port()
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        site = prefix / "idp.conf"
        # IDP_UPSTREAM is one address in compose (`web`, every replica); here, one line per replica.
        site.write_text(render_template({
            "IDP_SERVER_NAME": HOST, "IDP_PUBLIC_ORIGIN": f"https://{HOST}:{https_port}",
            "IDP_UPSTREAM": " max_fails=3 fail_timeout=10s;\n    server ".join(upstreams),
            "NGINX_HTTPS_PORT": str(https_port), "NGINX_HTTP_PORT": str(http_port),
            "NGINX_TLS_CERTIFICATE": str(tls["certificate"]), "NGINX_TLS_CERTIFICATE_KEY": str(tls["key"]),
        }))
        conf = prefix / "nginx.conf"
        conf.write_text(main_config(prefix, site))
        checked = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        process = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        started.append(process)
        wait_until(lambda: _listening(https_port) or process.poll() is not None, timeout=30, what="nginx to listen")
        assert process.poll() is None, (prefix / "error.log").read_text()
        return http_port

    yield start
    for process in started:
        stop_process_group(process)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- Python clients: the relying party's back channel, and a user on another address ---------------


class FromAddress(requests.adapters.HTTPAdapter):
    """Connect from a given local address (a second client machine on loopback)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, source_address=(self.address, 0), **kwargs)


class _RelyingPartyPage(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<p>relying party</p>")

    def log_message(self, *args):
        pass


@pytest.fixture
def relying_party():
    """The relying party's pages the browser is sent back to (loopback http, as RFC 8252 allows)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RelyingPartyPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def resolve_test_host(monkeypatch):
    """HOST resolves to loopback for Python clients too (Chromium gets --host-resolver-rules)."""
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: real("127.0.0.1" if host == HOST else host, *args, **kwargs))


def https_session(ca: Path, source: str = "127.0.0.1") -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the test CA
    session.verify = str(ca)
    session.mount("https://", FromAddress(source))
    return session


# --- the test ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql" if POSTGRES_URL else "sqlite"], indirect=True)
def test_browser_signs_in_through_nginx_tls_in_front_of_two_replicas(app, database_url, start_server, nginx, resolve_test_host, relying_party, make_user, make_client, tmp_path, chromium):
    require_service("database", database_url.startswith("postgresql"))  # one PostgreSQL behind every replica
    tls = make_tls_files(tmp_path)
    https_port = free_port()  # the issuer names nginx's port, so it is chosen first
    issuer = f"https://{HOST}:{https_port}"
    replicas = start_server.replicas(2, issuer, IDP_TRUSTED_PROXIES="1")
    http_port = nginx([urlsplit(base).netloc for base in replicas], tls, https_port)
    user = make_user(email="alice@example.com")
    admin = make_user(email="admin@example.com", is_admin=True)
    registered, secret = make_client(name="Proxy RP", redirect_uris=[f"{relying_party}/callback"], post_logout_redirect_uris=[f"{relying_party}/signed-out"])
    rp = https_session(tls["ca"])

    # Plain http is only a redirect; another host name gets no certificate.
    redirect = requests.get(f"http://127.0.0.1:{http_port}/account?x=1", headers={"Host": HOST}, allow_redirects=False, timeout=10)
    assert redirect.status_code == 308 and redirect.headers["Location"] == f"{issuer}/account?x=1"
    with pytest.raises(requests.exceptions.SSLError):
        rp.get(f"https://localhost:{https_port}/healthz", timeout=10)

    contexts = []
    try:
        context = chromium.new_context(ignore_https_errors=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)

        # Authorize -> login -> consent -> back to the relying party with a code.
        verifier, challenge = pkce_pair()
        page.goto(f"{issuer}/authorize?" + urlencode({
            "client_id": registered.client_id, "response_type": "code", "scope": "openid profile email",
            "redirect_uri": f"{relying_party}/callback", "state": "s1", "nonce": "n1",
            "code_challenge": challenge, "code_challenge_method": "S256"}))
        page.get_by_label("Email").fill(user.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page.get_by_role("heading", name="Allow Proxy RP?")).to_be_visible()
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(f"{relying_party}/callback?**")
        callback = {key: values[0] for key, values in parse_qs(urlsplit(page.url).query).items()}
        assert callback["state"] == "s1" and callback["iss"] == issuer

        # The relying party's back channel: token and userinfo through the same proxy.
        tokens = rp.post(f"{issuer}/token", auth=(registered.client_id, secret), timeout=30, data={
            "grant_type": "authorization_code", "code": callback["code"], "redirect_uri": f"{relying_party}/callback", "code_verifier": verifier})
        assert tokens.status_code == 200, tokens.text
        info = rp.get(f"{issuer}/userinfo", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"}, timeout=30)
        assert info.status_code == 200 and info.json()["email"] == user.email
        assert rp.get(f"{issuer}/.well-known/openid-configuration", timeout=30).json()["issuer"] == issuer

        # The account page: this browser's session (from 127.0.0.1), and a form that works.
        page.goto(f"{issuer}/account")
        expect(page.get_by_role("row").filter(has_text="(this browser)")).to_contain_text("127.0.0.1")
        page.get_by_role("button", name="Revoke access").click()
        expect(page.get_by_text("You have not allowed any application yet.")).to_be_visible()

        # RP-initiated logout with the ID token as hint, back to the relying party.
        page.goto(f"{issuer}/logout?" + urlencode({"id_token_hint": tokens.json()["id_token"],
                                                   "post_logout_redirect_uri": f"{relying_party}/signed-out", "state": "bye"}))
        page.wait_for_url(f"{relying_party}/signed-out?state=bye")
        page.goto(f"{issuer}/account")
        assert urlsplit(page.url).path == "/login"

        # The admin UI, in a browser context of its own (its own cookie jar).
        contexts.append(chromium.new_context(ignore_https_errors=True))
        admin_page = contexts[-1].new_page()
        admin_page.goto(f"{issuer}/admin/")
        admin_page.get_by_label("Email").fill(admin.email)
        admin_page.get_by_label("Password").fill(PASSWORD)
        admin_page.get_by_role("button", name="Sign in").click()
        expect(admin_page.get_by_role("heading", name="Dashboard")).to_be_visible()
        admin_page.get_by_role("navigation", name="Main").get_by_role("link", name="Sessions", exact=True).click()
        expect(admin_page.get_by_role("cell", name=admin.email).first).to_be_visible()
    finally:
        for context in contexts:
            context.close()

    # A user on another machine (127.0.0.3) who also claims to be 198.51.100.66: nginx appends the
    # address it sees, and the one trusted hop makes that the address of the session and the audit.
    other = https_session(tls["ca"], source="127.0.0.3")
    form = {"username": user.email, "password": PASSWORD, "csrf_token": csrf_token(other.get(f"{issuer}/login", timeout=30).text)}
    signed_in = other.post(f"{issuer}/login", data=form, headers={"Origin": issuer, "X-Forwarded-For": "198.51.100.66"}, timeout=30)
    assert signed_in.status_code == 200 and "Signed in" in signed_in.text
    account = other.get(f"{issuer}/account", headers={"X-Forwarded-For": "not an address"}, timeout=30)
    assert account.status_code == 200 and "127.0.0.3" in account.text and "198.51.100.66" not in account.text
    with app.app_context():
        assert "127.0.0.3" in set(db.session.scalars(select(UserSession.ip).where(UserSession.user_id == user.id)))
        ips = set(db.session.scalars(select(AuditEvent.ip).where(AuditEvent.action == "user.signed_in")))
    assert ips == {"127.0.0.1", "127.0.0.3"}
    # A form posted from another site is refused, even with a valid token.
    foreign = other.post(f"{issuer}/login", data=form, headers={"Origin": "https://evil.example"}, timeout=30)
    assert foreign.status_code == 400
    # Both replicas served requests.
    for base in replicas:
        log = (tmp_path / f"serve-{urlsplit(base).port}.log").read_text()
        assert len(re.findall(r'"(?:GET|POST) /(?!healthz)', log)) >= 2, log[-2000:]
