"""MARS's e-mail: templates rendered with Jinja, sent by SMTP or written to ``.eml`` files.

``send_mail(to, template, **context)`` is the whole API most code needs; see docs/mail.md.
"""

from __future__ import annotations

from mars_server.mail.backends import MailDeliveryError
from mars_server.mail.rendering import RenderedMail, register_template_folder, render_mail
from mars_server.mail.sending import build_message, deliver, send_mail

__all__ = [
    "MailDeliveryError",
    "RenderedMail",
    "build_message",
    "deliver",
    "register_template_folder",
    "render_mail",
    "send_mail",
]
