"""A real SMTP server (aiosmtpd) on loopback for every mail test, and helpers to read what it received."""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from idp.db import db
from idp.models import OutboxMessage
from idp.tasks import outbox
from tests.support import free_port, wait_until

LINK = re.compile(r"(https?://\S+\?token=[A-Za-z0-9_-]+)")
SMTP_USER, SMTP_PASSWORD = "mailer", "smtp-secret-for-tests"


class Inbox:
    """An aiosmtpd handler keeping every message it accepts (or refusing every recipient with `refuse`)."""

    def __init__(self, refuse: str | None = None):
        self.messages: list[EmailMessage] = []
        self.sessions: list[dict] = []
        self.refuse = refuse
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            # Implicit TLS and STARTTLS alike leave an SSL object on the connection's transport.
            self.sessions.append({"tls": server.transport.get_extra_info("ssl_object") is not None, "login": session.authenticated})
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [message for message in self.messages if message["To"] == address]

    def wait_for(self, address: str, count: int = 1) -> EmailMessage:
        """The `count`th message to `address`, waiting for the worker to send it."""
        wait_until(lambda: len(self.to(address)) >= count, timeout=60, what=f"mail number {count} to {address}")
        return self.to(address)[count - 1]


def bodies(message: EmailMessage) -> tuple[str, str]:
    """The plain-text and HTML bodies of a message."""
    return message.get_body("plain").get_content(), message.get_body("html").get_content()


def link_in(message: EmailMessage) -> str:
    """The single-use link of a message (the same in both bodies)."""
    text, html = bodies(message)
    found = LINK.search(text)
    assert found, text
    assert found.group(1) in html
    return found.group(1)


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 with its key, made now (nothing committed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "smtp-cert.pem", tmp_path / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def check_login(server, session, envelope, mechanism, auth_data):
    """aiosmtpd authenticator: only the test's user and password."""
    ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok)


class SmtpServer:
    """One running aiosmtpd controller and its inbox."""

    def __init__(self, inbox: Inbox, **options):
        self.inbox = inbox
        self.port = free_port()
        self.controller = Controller(inbox, hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_servers():
    """Start SMTP servers: smtp_servers(Inbox(), **Controller options) -> SmtpServer; all stopped afterwards."""
    started: list[SmtpServer] = []

    def start(inbox: Inbox | None = None, **options) -> SmtpServer:
        started.append(SmtpServer(inbox or Inbox(), **options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp(smtp_servers) -> SmtpServer:
    """A plain SMTP server on loopback (no STARTTLS offered: allowed on loopback)."""
    return smtp_servers()


@pytest.fixture
def inbox(smtp) -> Inbox:
    return smtp.inbox


@pytest.fixture
def config(config, smtp):
    """Every mail test's app sends through the loopback server; retries are quick; sign-up is open."""
    return {**config, "SMTP_URL": f"smtp://127.0.0.1:{smtp.port}", "MAIL_RETRY_BASE_SECONDS": 1, "SIGNUP": "open"}


def deliver_outbox(app) -> list[str]:
    """Run every undone outbox message once in this process (the worker's code path); their outcomes."""
    with app.app_context():
        db.session.remove()
        ids = list(db.session.scalars(select(OutboxMessage.id).where(OutboxMessage.done_at.is_(None)).order_by(OutboxMessage.id)))
        outcomes = [outbox.run(message_id, app.extensions["celery"]) for message_id in ids]
        db.session.remove()
        return outcomes
