"""Mail messages from templates: `mail/<name>.txt` (with a `subject` variable) and `mail/<name>.html`."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from idp.mail.brand import brand_name


@lru_cache(maxsize=1)
def _templates() -> Environment:
    # HTML bodies are escaped like pages; StrictUndefined turns a missing variable into an error,
    # never a mail with a blank where the link should be.
    return Environment(loader=PackageLoader("idp.mail", "templates"), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, trim_blocks=True, keep_trailing_newline=True)


def sender(mail_from: str) -> str:
    """The From header: MAIL_FROM, given the product name as display name when it has none."""
    name, address = parseaddr(mail_from)
    return formataddr((name or brand_name(), address))


def compose(name: str, *, to: str, mail_from: str, **context) -> EmailMessage:
    """The message `name` to `to`: subject and plain-text body from the .txt, an HTML alternative from the .html."""
    context = {"brand": brand_name(), "to": to, **context}
    text = _templates().get_template(f"mail/{name}.txt").make_module(context)
    html = _templates().get_template(f"mail/{name}.html").render(context)
    message = EmailMessage()
    message["Subject"] = text.subject
    message["From"] = sender(mail_from)
    message["To"] = to
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=parseaddr(mail_from)[1].rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: autoresponders must not answer
    message.set_content(str(text))
    message.add_alternative(html, subtype="html")
    return message
