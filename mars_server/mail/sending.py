"""``send_mail``: render a template, address it, queue it; ``deliver``: hand it to the backend."""

from __future__ import annotations

import email
import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

from flask import current_app

from mars_server.mail.backends import MailDeliveryError, SmtpServer, send_smtp, write_eml
from mars_server.mail.rendering import render_mail

if TYPE_CHECKING:
    from email.headerregistry import Address

    from mars_server.mail.rendering import RenderedMail

log = logging.getLogger(__name__)

# Non-ASCII bodies go as quoted-printable or base64, never raw 8-bit: not every relay on the
# way announces 8BITMIME, and a mangled link is a broken link.
POLICY = default_policy.clone(cte_type="7bit")


def build_message(to: str, rendered: RenderedMail, sender: str) -> EmailMessage:
    """Address ``rendered`` from ``sender`` to ``to``: text, plus HTML as an alternative.

    Raises :class:`ValueError` unless ``to`` is exactly one address.
    """
    message = EmailMessage(policy=POLICY)
    message["From"] = sender
    message["To"] = to
    recipients: tuple[Address, ...] = message["To"].addresses
    if len(recipients) != 1 or not recipients[0].domain:
        raise ValueError(f"send_mail takes one recipient address, not {to!r}")
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    # The sender's domain, not make_msgid's default: that asks DNS for this host's name.
    message["Message-ID"] = make_msgid(domain=message["From"].addresses[0].domain)
    message.set_content(rendered.text)
    if rendered.html is not None:
        message.add_alternative(rendered.html, subtype="html")
    return message


def send_mail(to: str, template: str, /, **context: Any) -> str | None:
    """Render mail ``template`` with ``context`` for ``to``, and queue it for delivery.

    The message is rendered now, so a missing template or variable fails the caller; it is
    sent by a ``mail.send`` job that commits with the caller's transaction and is retried
    when the server fails. The queued message is encrypted at rest: it may carry a link that
    works like a password. Returns the job's id.
    """
    message = build_message(to, render_mail(template, **context), _settings()["MAIL_FROM"])
    from mars_server.crypto import seal
    from mars_server.events import enqueue

    return enqueue("mail.send", message=seal(message.as_bytes()), template=template)


def deliver_sealed(message: str | None, template: str) -> None:
    """The ``mail.send`` task: decrypt a queued message and deliver it. Once sent, the job
    forgets the message (it commits with the job's success): the job stays for days, and the
    message may hold a link that works like a password, and the recipient's address."""
    import sqlalchemy as sa

    from mars_server.crypto import open_sealed
    from mars_server.db import db
    from mars_server.events import current_job
    from mars_server.events.models import Job

    if message is None:
        return  # sent already; a retry after the success was recorded
    parsed = email.message_from_bytes(open_sealed(message), policy=POLICY)
    deliver(parsed, template)
    job = current_job()
    if job is not None:
        db.session.execute(
            sa.update(Job)
            .where(Job.id == job.id)
            .values(kwargs={"message": None, "template": template})
        )


def deliver(message: EmailMessage, template: str = "") -> None:
    """Hand ``message`` to the configured backend now.

    ``smtp`` gives it to ``MARS_SMTP_HOST``; ``files`` writes it to ``<instance>/mail/``.
    Raises :class:`MailDeliveryError` when the backend fails.
    """
    settings = _settings()
    backend = settings["MAIL_BACKEND"]
    try:
        if backend == "smtp":
            send_smtp(message, SmtpServer.from_settings(settings))
            log.info("mail %s (%s) sent through %s", message["Message-ID"], template, backend)
        else:
            path = write_eml(message, settings["INSTANCE_PATH"])
            log.info("mail %s (%s) written to %s", message["Message-ID"], template, path)
    except MailDeliveryError as exc:
        log.warning("mail %s (%s) not delivered: %s", message["Message-ID"], template, exc)
        raise


def _settings() -> dict[str, Any]:
    return current_app.config["MARS"]
