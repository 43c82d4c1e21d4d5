"""Delivering a message: SMTP (STARTTLS or implicit TLS) per IDP_SMTP_URL, else a folder of `.eml` files.

`smtp://` always upgrades with STARTTLS (RFC 3207) when the server offers it, and refuses to send
in the clear to anything but a loopback host unless IDP_SMTP_ALLOW_PLAIN says so: credentials and
reset links must not cross a network unencrypted by accident. `smtps://` is TLS from the first
byte (RFC 8314 3.3). Certificates are verified against the system's CAs or IDP_SMTP_CA_FILE.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from idp.config import is_loopback_host
from idp.security import random_token

log = logging.getLogger(__name__)

# Below the outbox task's 15 s hard limit (idp/tasks/outbox.py), so a stalled server is an error, not a killed task.
SMTP_TIMEOUT_SECONDS = 10
DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
MAIL_FOLDER = "mail"


class MailError(Exception):
    """The message was not handed over (refused, unreachable, or not safe to send); the text is for operators."""


def deliver(message: EmailMessage, config: Mapping[str, Any]) -> str:
    """Hand `message` over once; returns where it went, raises MailError when it did not go."""
    if not config["SMTP_URL"]:
        return str(write_to_folder(message, Path(config["INSTANCE_DIR"]) / MAIL_FOLDER))
    try:
        return send_smtp(message, config)
    except smtplib.SMTPResponseException as error:
        raise MailError(f"{type(error).__name__}: {error.smtp_code} {_text(error.smtp_error)}") from None
    except smtplib.SMTPRecipientsRefused as error:
        refusals = "; ".join(f"{code} {_text(text)}" for code, text in error.recipients.values())
        raise MailError(f"SMTPRecipientsRefused: {refusals}") from None
    except (smtplib.SMTPException, OSError) as error:  # ssl.SSLError and timeouts are OSErrors
        raise MailError(f"{type(error).__name__}: {error}") from None


def send_smtp(message: EmailMessage, config: Mapping[str, Any]) -> str:
    """One SMTP session: connect, secure it, log in if the URL has a user, send."""
    url = urlsplit(config["SMTP_URL"])
    host, port = url.hostname, url.port or DEFAULT_PORTS[url.scheme]
    context = ssl.create_default_context(cafile=config["SMTP_CA_FILE"] or None)
    if url.scheme == "smtps":
        connection = smtplib.SMTP_SSL(host, port, timeout=SMTP_TIMEOUT_SECONDS, context=context)
    else:
        connection = smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT_SECONDS)
    with connection:
        if url.scheme == "smtp":
            connection.ehlo()
            if connection.has_extn("starttls"):
                connection.starttls(context=context)
                connection.ehlo()
            elif not (is_loopback_host(host) or config["SMTP_ALLOW_PLAIN"]):
                raise MailError(f"{host}:{port} offers no STARTTLS; refusing to send in the clear (IDP_SMTP_ALLOW_PLAIN allows it)")
        if url.username:
            connection.login(unquote(url.username), unquote(url.password or ""))
        connection.send_message(message)
    return f"smtp://{host}:{port}"


def write_to_folder(message: EmailMessage, folder: Path) -> Path:
    """Write `message` as a new `.eml` file (complete or absent: written aside, then renamed); log its name."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{random_token(6)}.eml"
    partial = folder / f".{name}.part"
    partial.write_bytes(message.as_bytes())
    path = partial.rename(folder / name)
    # The embedded default announces itself: this line is how a developer finds the mail.
    log.warning("mail to %s written to %s (no IDP_SMTP_URL set: the development mail folder)", message["To"], path)
    return path


def _text(value: bytes | str) -> str:
    return (value.decode(errors="replace") if isinstance(value, bytes) else str(value))[:300]
