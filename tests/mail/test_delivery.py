"""Mail through a real SMTP server on loopback: composed from templates, sent through the outbox by the
worker's code path (and by a real worker), STARTTLS and implicit TLS, retries then an audited failure."""

from __future__ import annotations

import logging
import ssl

from sqlalchemy import select

from idp.db import db
from idp.models import AuditEvent, OneTimeLink, OutboxMessage
from idp.onboarding.service import issue_link
from idp.security import digest
from idp.users.models import User
from tests.mail.conftest import SMTP_PASSWORD, SMTP_USER, Inbox, bodies, check_login, deliver_outbox, link_in, self_signed
from tests.oidc.flow import csrf_token
from tests.support import committing


def ask_for_reset(client, email: str):
    token = csrf_token(client.get("/password/forgot").get_data(as_text=True))
    return client.post("/password/forgot", data={"email": email, "csrf_token": token})


def every_value(app) -> str:
    """Every row of every table as one string (to prove a raw token is stored nowhere)."""
    from idp.models import Base

    with app.app_context():
        return repr([list(db.session.execute(select(table))) for table in Base.metadata.sorted_tables])


def test_a_reset_mail_is_written_with_the_change_and_sent_branded_in_text_and_html(app, client, make_user, inbox):
    user = make_user(email="alice@example.com")
    assert ask_for_reset(client, "alice@example.com").status_code == 200
    with app.app_context():
        [message] = db.session.scalars(select(OutboxMessage)).all()
        assert message.kind == "mail" and message.payload["to"] == "alice@example.com"
        # The request only queued it: the worker looks the account up and makes the link.
        assert db.session.query(OneTimeLink).count() == 0

    assert deliver_outbox(app) == ["delivered"]
    with app.app_context():
        link = db.session.scalar(select(OneTimeLink))
        assert link.user_id == user.id and link.kind == "reset"
    [mail] = inbox.to("alice@example.com")
    assert mail["Subject"] == "Reset your idp password"
    assert mail["From"] == "idp <no-reply@localhost>"
    text, html = bodies(mail)
    url = link_in(mail)
    assert url.startswith("http://localhost/password/reset?token=idp_ml_")
    assert "30 minutes" in text and "30 minutes" in html and "<strong>alice@example.com</strong>" in html
    token = url.partition("token=")[2]
    with app.app_context():
        assert db.session.get(OneTimeLink, link.id).digest == digest(token)
        assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.action == "mail.sent")) == "mail.sent"
    assert token not in every_value(app)


def test_a_mail_delivered_twice_carries_the_same_working_link(app, client, make_user, inbox):
    from idp.onboarding.mails import send_queued_mail

    with app.app_context():
        user = db.session.merge(make_user(email="twice@example.com"))
        issue_link(user, "verify", user.email)
        db.session.commit()
    assert deliver_outbox(app) == ["delivered"]
    with app.app_context():
        # A second attempt at the same message, as when the first outlived its claim or its worker
        # was killed after the server took the mail: the relay hands the same payload over again.
        payload = db.session.scalar(select(OutboxMessage.payload))
        assert committing(send_queued_mail)(payload, attempt=2, final=False) is True
    first, second = inbox.to("twice@example.com")
    assert link_in(first) == link_in(second)
    token = link_in(first).partition("token=")[2]
    with app.app_context():
        assert db.session.scalar(select(OneTimeLink.digest)) == digest(token)
    assert token not in every_value(app)
    assert client.get(link_in(first).removeprefix("http://localhost")).status_code == 303  # the token moves into the session
    assert "Confirm my address" in client.get("/email/verify").get_data(as_text=True)


def test_starttls_with_a_login_and_a_certificate_checked_against_the_configured_ca(make_app, make_user, smtp_servers, tmp_path):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = smtp_servers(Inbox(), tls_context=context, require_starttls=True, authenticator=check_login, auth_require_tls=True)
    app = make_app(SMTP_URL=f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@localhost:{server.port}", SMTP_CA_FILE=str(cert))
    with app.app_context():
        user = db.session.merge(make_user(email="tls@example.com"))
        issue_link(user, "verify", user.email)
        db.session.commit()
    assert deliver_outbox(app) == ["delivered"]
    assert server.inbox.sessions == [{"tls": True, "login": True}]
    assert server.inbox.to("tls@example.com")[0]["Subject"] == "Confirm your email address for idp"


def test_a_certificate_nobody_vouches_for_is_a_failed_delivery_not_a_plaintext_one(make_app, make_user, smtp_servers, tmp_path, caplog):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = smtp_servers(Inbox(), tls_context=context, require_starttls=True)
    app = make_app(SMTP_URL=f"smtp://localhost:{server.port}")  # the system's CAs: the self-signed one is unknown
    with app.app_context():
        user = db.session.merge(make_user(email="mitm@example.com"))
        issue_link(user, "verify", user.email)
        db.session.commit()
    with caplog.at_level(logging.WARNING, logger="idp.onboarding.mails"):
        assert deliver_outbox(app) == ["retry"]
    assert server.inbox.messages == []
    assert "SSLCertVerificationError" in caplog.text


def test_implicit_tls_smtps(make_app, make_user, smtp_servers, tmp_path):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = smtp_servers(Inbox(), ssl_context=context)
    app = make_app(SMTP_URL=f"smtps://localhost:{server.port}", SMTP_CA_FILE=str(cert))
    with app.app_context():
        user = db.session.merge(make_user(email="smtps@example.com"))
        issue_link(user, "reset", user.email)
        db.session.commit()
    assert deliver_outbox(app) == ["delivered"]
    assert server.inbox.sessions[0]["tls"] is True


def test_a_refusing_server_is_retried_with_backoff_then_the_failure_is_audited(make_app, make_user, smtp_servers):
    server = smtp_servers(Inbox(refuse="550 5.1.1 No such mailbox here"))
    app = make_app(SMTP_URL=f"smtp://127.0.0.1:{server.port}")
    client = app.test_client()
    make_user(email="bounce@example.com")
    assert ask_for_reset(client, "bounce@example.com").status_code == 200  # the request never waits for the server
    outcomes = []
    for _ in range(6):
        with app.app_context():
            db.session.execute(OutboxMessage.__table__.update().values(due_at=db.func.now()))
            db.session.commit()
        outcomes += deliver_outbox(app)
    assert outcomes == ["retry"] * 5 + ["failed"]
    with app.app_context():
        message = db.session.scalar(select(OutboxMessage))
        assert message.outcome == "failed" and message.attempts == 6
        failed = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "mail.failed")).all()
        assert len(failed) == 1
        assert failed[0].details["attempts"] == 6 and "550 5.1.1 No such mailbox here" in failed[0].details["detail"]
        user_id = db.session.scalar(select(User.id).where(User.email == "bounce@example.com"))
        assert failed[0].target == f"user:{user_id}"
    assert server.inbox.messages == []


def test_without_a_server_mail_goes_to_the_instance_folder_with_a_console_line(make_app, make_user, caplog, tmp_path):
    app = make_app(SMTP_URL=None, INSTANCE_DIR=str(tmp_path / "dev-instance"))
    with app.app_context():
        user = db.session.merge(make_user(email="dev@example.com"))
        issue_link(user, "verify", user.email)
        db.session.commit()
    with caplog.at_level(logging.WARNING, logger="idp.mail.transport"):
        assert deliver_outbox(app) == ["delivered"]
    [written] = list((tmp_path / "dev-instance" / "mail").glob("*.eml"))
    assert [record.getMessage() for record in caplog.records] == [
        f"mail to dev@example.com written to {written} (no IDP_SMTP_URL set: the development mail folder)"]
    from email import message_from_bytes, policy

    mail = message_from_bytes(written.read_bytes(), policy=policy.default)
    assert mail["Subject"] == "Confirm your email address for idp" and "/email/verify?token=idp_ml_" in bodies(mail)[0]
    assert list((tmp_path / "dev-instance" / "mail").glob(".*")) == []  # no half-written file left


def test_a_real_worker_sends_what_a_request_queued(app, client, make_user, inbox, celery_worker):
    make_user(email="worker@example.com")
    assert ask_for_reset(client, "worker@example.com").status_code == 200
    mail = inbox.wait_for("worker@example.com")
    assert "/password/reset?token=" in link_in(mail)
