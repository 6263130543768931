"""Mail templates: a subject, a text body and an optional HTML body, rendered with Jinja.

A mail named ``verify_email`` is three files in a template folder: ``verify_email.subject.txt``
(one line), ``verify_email.txt`` and, optionally, ``verify_email.html``. The core's folder,
``mars_server/templates/mail``, holds only the parts every mail may use (``_layout.html``,
``_button.html``); the mails themselves are the plugins', each added with
:func:`register_template_folder` (the account mails are the ``auth`` plugin's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from flask import current_app

if TYPE_CHECKING:
    import os

    from flask import Flask

#: The parts every plugin's HTML mails share: ``_layout.html`` and ``_button.html``.
CORE_TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "mail"
_EXTENSION_KEY = "mars_mail_templates"


@dataclass(frozen=True)
class RenderedMail:
    """What a template says, before it is addressed: the subject and the bodies."""

    subject: str
    text: str
    html: str | None


def _environment(app: Flask) -> jinja2.Environment:
    """The app's mail environment, built on first use and kept in ``app.extensions``.

    Per app, not per module, because each app may have its own plugins' folders.
    """
    environment: jinja2.Environment | None = app.extensions.get(_EXTENSION_KEY)
    if environment is None:
        environment = jinja2.Environment(
            loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(CORE_TEMPLATES)]),
            # Escape in HTML only: a text body shows "<" as it is.
            autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
            # A misspelt variable must fail in the tests, not put a blank link in a mail.
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        environment = app.extensions.setdefault(_EXTENSION_KEY, environment)
    return environment


def register_template_folder(app: Flask, folder: str | os.PathLike[str]) -> None:
    """Let ``app`` find mail templates in ``folder``, after the core's and earlier ones.

    A plugin calls this from its ``mars_app_ready`` hook. Folders are searched in the order
    they were added, the core's first: an earlier folder's mail wins. The ``auth`` plugin adds
    its folder before any other plugin's (``tryfirst``), so no plugin replaces the account
    mails (a password reset must say what MARS says); a plugin should name its templates
    after itself (``projects_invite``).
    """
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"mail template folder {path} is not a directory")
    loader = _environment(app).loader
    assert isinstance(loader, jinja2.ChoiceLoader)
    loader.loaders = [*loader.loaders, jinja2.FileSystemLoader(path)]


def render_mail(template: str, /, **context: Any) -> RenderedMail:
    """Render mail ``template`` with ``context``, in the current app.

    Raises :class:`jinja2.TemplateNotFound` when the subject or text template is missing, and
    :class:`jinja2.UndefinedError` when the template uses a variable ``context`` lacks.
    """
    environment = _environment(current_app)
    subject = environment.get_template(f"{template}.subject.txt").render(context)
    text = environment.get_template(f"{template}.txt").render(context)
    try:
        html_template = environment.get_template(f"{template}.html")
    except jinja2.TemplateNotFound as exc:
        if exc.name != f"{template}.html":
            raise
        html = None
    else:
        html = html_template.render(context)
    # One line, whatever the context holds: a newline in a header would start a new header.
    return RenderedMail(subject=" ".join(subject.split()), text=text, html=html)
