"""Mail as a user receives it: a real SMTP server on loopback (aiosmtpd) and the links in
what it was given."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """An aiosmtpd handler that keeps what it is given."""

    def __init__(self):
        self.envelopes = []
        self.logins = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        if session.auth_data is not None:
            self.logins.append(session.auth_data.login.decode())
        return "250 Message accepted for delivery"

    @property
    def messages(self):
        return [
            email.message_from_bytes(e.content, policy=email.policy.default) for e in self.envelopes
        ]


def smtp_server_fixture():
    """Start aiosmtpd on 127.0.0.1: ``smtp_server(**controller_options) -> (port, inbox)``."""
    controllers = []

    def start(**options):
        inbox = Inbox()
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return port, inbox

    yield start
    for controller in controllers:
        controller.stop()


def smtp_app_fixture(make_app, smtp_server):
    """An app that mails a fresh aiosmtpd: ``smtp_app(server_options, **settings)``."""

    def build(server_options=None, **settings):
        port, inbox = smtp_server(**(server_options or {}))
        settings = {
            "MAIL_BACKEND": "smtp",
            "MAIL_FROM": "MARS <mars@mars.test>",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": port,
            "SMTP_SECURITY": "none",
            **settings,
        }
        return make_app(**settings), inbox

    return build


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])


def html_links(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.hrefs


def text_links(text: str) -> list[str]:
    return re.findall(r"https?://\S+", text)


def development_mail(app) -> list[email.message.EmailMessage]:
    """What ``app`` has mailed to its development mailbox (``.eml`` files), once its worker
    has sent what was queued, oldest first."""
    from mars_server.testing import run_due_jobs

    run_due_jobs(app)
    folder = Path(app.config["MARS"]["INSTANCE_PATH"], "mail")
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]


def link_token(message) -> str:
    """The ``token`` of the first link in ``message``'s text part."""
    text = next(part for part in message.walk() if part.get_content_type() == "text/plain")
    url = re.search(r"https?://\S+", text.get_payload(decode=True).decode()).group(0)
    return parse_qs(urlsplit(url).query)["token"][0]
