"""Where a finished message goes: an SMTP server, or an ``.eml`` file in the instance folder.

Each backend is a plain function of the message and the settings, so a background job can
call it as well as a request can. A failure is a :class:`MailDeliveryError` that names the
backend and the server, never the credentials.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from email.message import EmailMessage


class MailDeliveryError(Exception):
    """A message could not be handed over; the text names the backend and server only."""


@dataclass(frozen=True)
class SmtpServer:
    """The ``MARS_SMTP_*`` settings; the password stays out of ``repr``."""

    host: str
    port: int
    security: str  # "starttls", "tls" or "none"
    timeout: float
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> SmtpServer:
        return cls(
            host=settings["SMTP_HOST"],
            port=settings["SMTP_PORT"],
            security=settings["SMTP_SECURITY"],
            timeout=settings["SMTP_TIMEOUT"],
            username=settings["SMTP_USERNAME"],
            password=settings["SMTP_PASSWORD"],
            ca_file=settings["SMTP_CA_FILE"],
        )

    def tls_context(self) -> ssl.SSLContext:
        """A verifying context; ``ca_file`` replaces the system's CAs (a private relay's CA)."""
        return ssl.create_default_context(cafile=self.ca_file)


def send_smtp(message: EmailMessage, server: SmtpServer) -> None:
    """Hand ``message`` to ``server``, over STARTTLS, TLS or plain as configured."""
    where = f"smtp backend, server {server.host}:{server.port}"
    try:
        if server.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                server.host, server.port, timeout=server.timeout, context=server.tls_context()
            )
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
        with smtp:
            if server.security == "starttls":
                smtp.starttls(context=server.tls_context())
            if server.username is not None:
                smtp.login(server.username, server.password or "")
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        # Not chained and without the server's reply: some servers echo what they were sent.
        raise MailDeliveryError(
            f"{where}: the server refused the credentials ({exc.smtp_code})"
        ) from None
    except OSError as exc:  # smtplib's errors, refused connections, timeouts, TLS failures
        raise MailDeliveryError(f"{where}: {_describe(exc, server.password)}") from exc


def _describe(exc: OSError, password: str | None) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error
        if isinstance(reply, bytes):
            reply = reply.decode(errors="replace")
        text = f"the server replied {exc.smtp_code} {reply}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    # A refused recipient's address is in the error, which a job keeps: never an address.
    text = _ADDRESS.sub("<address>", text)
    return text.replace(password, "***") if password else text


_ADDRESS = re.compile(r"[^\s<>()\[\]{}'\",;:]+@[^\s<>()\[\]{}'\",;:]+")


def write_eml(message: EmailMessage, instance_path: str) -> Path:
    """Write ``message`` to ``<instance>/mail/<time>-<random>.eml`` and return the path.

    The file appears whole or not at all (written aside, then renamed), and only its owner
    may read it: development mails carry working reset links.
    """
    folder = Path(instance_path, "mail")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = folder / f"{stamp}-{secrets.token_hex(4)}.eml"
    partial = folder / f".{path.name}.partial"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(message.as_bytes())
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise MailDeliveryError(f"files backend, folder {folder}: {exc.strerror or exc}") from exc
    return path
