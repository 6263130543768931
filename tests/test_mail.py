"""E-mail: templates rendered, messages delivered to a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import ipaddress
import logging
import re
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from mars_server import config
from mars_server.db import db
from mars_server.events.models import Job
from mars_server.mail import (
    MailDeliveryError,
    build_message,
    deliver,
    register_template_folder,
    render_mail,
    send_mail,
)
from mars_server.mail.backends import SmtpServer
from mars_server.testing import run_due_jobs
from tests.mailbox import free_port, html_links, text_links

PASSWORD = "correct-horse-battery-staple"
TEMPLATES = {
    "verify_email": (
        "Confirm your e-mail address for MARS",
        "verify_url",
        {"display_name": "Ada Lovelace", "expires_in_hours": 24},
    ),
    "reset_password": (
        "Reset your MARS password",
        "reset_url",
        {"display_name": "Ada Lovelace", "expires_in_minutes": 30},
    ),
}


def context_for(template, url="https://mars.test/link?token=abc&user=1"):
    """The context ``template`` needs, its link being ``url``."""
    _, url_name, context = TEMPLATES[template]
    return {url_name: url, **context}


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"mars", PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_mail_arrives_over_smtp_and_its_links_work(smtp_app, template):
    # A query string that HTML must escape (&) and quoted-printable must encode (=); the
    # address is one this app answers, so following the link proves it works.
    url = f"http://localhost/healthz?token=Zm9v-YmFy_{template}&user=ada%40example.org"
    app, inbox = smtp_app()
    sent = mail_now(app, "Ada Lovelace <ada@example.org>", template, **context_for(template, url))
    assert sent.status == "succeeded"

    assert [e.rcpt_tos for e in inbox.envelopes] == [["ada@example.org"]]
    assert inbox.envelopes[0].mail_from == "mars@mars.test"
    [message] = inbox.messages
    assert message["To"] == "Ada Lovelace <ada@example.org>"
    assert message["From"] == "MARS <mars@mars.test>"
    assert message["Subject"] == TEMPLATES[template][0]
    assert abs(message["Date"].datetime - datetime.now(UTC)) < timedelta(minutes=1)
    assert re.fullmatch(r"<[^<>@]+@mars\.test>", message["Message-ID"])
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Hello Ada Lovelace," in text
    assert "Hello Ada Lovelace," in html
    assert text_links(text) == [url]
    assert html_links(html) == [url, url]
    assert not re.search(r"src=|url\(|<link|@import", html)  # self-contained: nothing to fetch
    assert app.test_client().get(text_links(text)[0]).status_code == 200


def mail_now(app, to, template, **context):
    """``send_mail`` as a request does, then its job run as a worker would; return the job."""
    with app.app_context():
        job_id = send_mail(to, template, **context)
        db.session.commit()
    run_due_jobs(app)
    with app.app_context():
        return db.session.get(Job, job_id)


def verify_mail():
    return render_mail("verify_email", **context_for("verify_email"))


def test_smtp_login_never_logs_the_password(smtp_app, caplog):
    caplog.set_level(logging.DEBUG)
    server_options = {"authenticator": authenticator, "auth_require_tls": False}
    app, inbox = smtp_app(server_options, SMTP_USERNAME="mars", SMTP_PASSWORD=PASSWORD)
    sent = mail_now(app, "ada@example.org", "reset_password", **context_for("reset_password"))
    assert sent.status == "succeeded"
    # Sent, the job forgets the sealed message (its link, the address) for the days it stays.
    assert sent.kwargs == {"message": None, "template": "reset_password"}
    assert inbox.logins == ["mars"]
    assert len(inbox.messages) == 1
    assert "the SMTP password crosses unencrypted" in caplog.text  # the warning about none
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(SmtpServer.from_settings(app.config["MARS"]))


def test_refused_credentials_raise_without_the_password(smtp_app, caplog):
    server_options = {"authenticator": authenticator, "auth_require_tls": False}
    wrong = "not-the-" + PASSWORD
    app, inbox = smtp_app(server_options, SMTP_USERNAME="mars", SMTP_PASSWORD=wrong)
    with app.app_context(), pytest.raises(MailDeliveryError) as caught:
        deliver(build_message("ada@example.org", verify_mail(), "mars@mars.test"))
    assert str(caught.value).startswith("smtp backend, server 127.0.0.1:")
    assert "refused the credentials (535)" in str(caught.value)
    assert caught.value.__cause__ is None
    # Sent by a job, the failure is kept on the job, which waits to be tried again.
    job = mail_now(app, "ada@example.org", "verify_email", **context_for("verify_email"))
    assert (job.status, job.attempts) == ("queued", 1)
    assert job.kwargs["message"]  # kept, sealed, for the next attempt
    assert job.last_error.startswith("mars_server.mail.backends.MailDeliveryError: smtp backend")
    assert "refused the credentials (535)" in job.last_error
    assert inbox.envelopes == []
    assert wrong not in caplog.text
    assert wrong not in job.last_error
    assert any(r.levelname == "WARNING" and "not delivered" in r.message for r in caplog.records)


def test_unreachable_server_raises_quickly_without_the_password(make_app, caplog):
    port = free_port()  # nothing listens there
    app = make_app(
        MAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=port,
        SMTP_USERNAME="mars-mailer",
        SMTP_PASSWORD=PASSWORD,
        SMTP_TIMEOUT=5,
    )
    started = time.monotonic()
    with app.app_context(), pytest.raises(MailDeliveryError) as caught:
        deliver(build_message("ada@example.org", verify_mail(), "mars@mars.test"))
    assert time.monotonic() - started < 5
    assert f"smtp backend, server 127.0.0.1:{port}" in str(caught.value)
    assert "ConnectionRefusedError" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert "mars-mailer" not in str(caught.value)
    assert PASSWORD not in caplog.text


def test_files_backend_writes_a_parseable_eml_in_the_instance_folder(make_app):
    app = make_app()  # testing: files by default
    assert app.config["MARS"]["MAIL_BACKEND"] == "files"
    url = "https://mars.test/r?a=1&b=2"
    sent = mail_now(app, "ada@example.org", "reset_password", **context_for("reset_password", url))
    assert sent.status == "succeeded"
    [path] = Path(app.config["MARS"]["INSTANCE_PATH"], "mail").iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}\.eml", path.name)
    assert path.stat().st_mode & 0o077 == 0
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "ada@example.org"
    assert message["Subject"] == "Reset your MARS password"
    assert text_links(message.get_body(("plain",)).get_content()) == [url]
    assert html_links(message.get_body(("html",)).get_content()) == [url, url]


def test_a_missing_variable_is_an_error_and_nothing_is_sent(make_app):
    app = make_app()
    with app.app_context(), pytest.raises(jinja2.UndefinedError, match="expires_in_hours"):
        send_mail("ada@example.org", "verify_email", display_name="Ada", verify_url="https://x/")
    with app.app_context(), pytest.raises(jinja2.TemplateNotFound, match="no_such_mail"):
        send_mail("ada@example.org", "no_such_mail")
    assert not Path(app.config["MARS"]["INSTANCE_PATH"], "mail").exists()


def test_context_is_escaped_in_html_and_kept_in_text(make_app):
    app = make_app()
    with app.app_context():
        mail = render_mail(
            "verify_email",
            display_name='<script>alert("x")</script>',
            verify_url='https://mars.test/v?a=1&b="2"',
            expires_in_hours=1,
        )
    assert '<script>alert("x")</script>' in mail.text
    assert "<script" not in mail.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in mail.html
    assert html_links(mail.html) == ['https://mars.test/v?a=1&b="2"'] * 2
    assert "The link works for 1 hour." in mail.text


def test_one_recipient_only(make_app):
    app = make_app()
    with app.app_context():
        for to in ("ada@example.org, eve@example.org", "ada@example.org\nBcc: eve@example.org"):
            with pytest.raises(ValueError, match=r"one recipient|linefeed"):
                send_mail(to, "reset_password", **context_for("reset_password"))
    assert not Path(app.config["MARS"]["INSTANCE_PATH"], "mail").exists()


def test_a_plugin_adds_a_template_folder(make_app, tmp_path):
    folder = tmp_path / "plugin_templates"
    folder.mkdir()
    (folder / "plugin_hello.subject.txt").write_text("Hello\nfrom {{ name }}\n")
    (folder / "plugin_hello.txt").write_text("Hello {{ name }}.\n")
    (folder / "verify_email.subject.txt").write_text("Not the core's subject\n")
    app = make_app()
    register_template_folder(app, folder)
    with app.app_context():
        mail = render_mail("plugin_hello", name="a plugin")
        core = render_mail("verify_email", display_name="A", verify_url="u", expires_in_hours=2)
    sent = mail_now(app, "ada@example.org", "plugin_hello", name="a plugin")
    assert sent.status == "succeeded"
    assert mail.subject == "Hello from a plugin"  # one line, whatever the template says
    assert mail.html is None
    [path] = (tmp_path / "instance" / "mail").iterdir()
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Hello a plugin.\n"
    assert core.subject == "Confirm your e-mail address for MARS"  # the core's folder wins
    with pytest.raises(ValueError, match="not a directory"):
        register_template_folder(app, tmp_path / "missing")


# --- TLS, against a throwaway CA and a certificate for 127.0.0.1 made here ---


@pytest.fixture
def tls(tmp_path):
    """``ca_file`` to trust, and ``server_context`` for aiosmtpd, with a certificate it signed."""
    pytest.importorskip("cryptography", reason="the TLS tests make certificates with cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)

    def certificate(subject, issuer, public_key, issuer_key, extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate(
        "MARS test CA",
        "MARS test CA",
        ca_key.public_key(),
        ca_key,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
            (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
        ],
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certificate(
        "127.0.0.1",
        "MARS test CA",
        server_key.public_key(),
        ca_key,
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False,
            ),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
        ],
    )
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    return SimpleNamespace(ca_file=str(ca_file), server_context=server_context)


def test_starttls_to_a_trusted_server_then_login(smtp_app, tls):
    server_options = {
        "tls_context": tls.server_context,
        "require_starttls": True,  # MAIL FROM before STARTTLS is refused
        "authenticator": authenticator,  # and AUTH is offered only over TLS
    }
    app, inbox = smtp_app(
        server_options,
        SMTP_SECURITY="starttls",
        SMTP_CA_FILE=tls.ca_file,
        SMTP_USERNAME="mars",
        SMTP_PASSWORD=PASSWORD,
    )
    sent = mail_now(app, "ada@example.org", "verify_email", **context_for("verify_email"))
    assert sent.status == "succeeded"
    assert inbox.logins == ["mars"]
    assert [m["Subject"] for m in inbox.messages] == ["Confirm your e-mail address for MARS"]


def test_starttls_verifies_the_certificate_by_default(smtp_app, tls):
    server_options = {"tls_context": tls.server_context, "require_starttls": True}
    app, inbox = smtp_app(server_options, SMTP_SECURITY="starttls")  # the system's CAs only
    with app.app_context(), pytest.raises(MailDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        deliver(build_message("ada@example.org", verify_mail(), "mars@mars.test"))
    assert inbox.envelopes == []


def test_implicit_tls(smtp_app, tls):
    app, inbox = smtp_app(
        {"ssl_context": tls.server_context}, SMTP_SECURITY="tls", SMTP_CA_FILE=tls.ca_file
    )
    sent = mail_now(app, "ada@example.org", "reset_password", **context_for("reset_password"))
    assert sent.status == "succeeded"
    assert [m["Subject"] for m in inbox.messages] == ["Reset your MARS password"]


# --- settings ---


def settings_problems(tmp_path, **core):
    raw = config.gather(core, environ={})
    settings = config.validate_core(raw, str(tmp_path))
    return settings, raw


def test_mail_defaults_follow_the_environment(tmp_path):
    development, raw = settings_problems(tmp_path, ENV="development")
    assert raw.problems == []
    assert development["MAIL_BACKEND"] == "files"
    assert development["MAIL_FROM"] == "MARS <no-reply@localhost>"
    assert (development["SMTP_PORT"], development["SMTP_SECURITY"]) == (587, "starttls")
    assert development["SMTP_TIMEOUT"] == 10
    production, raw = settings_problems(
        tmp_path,
        ENV="production",
        SECRET_KEY="k" * 40,
        SMTP_HOST="smtp.mars.test",
        PUBLIC_URL="https://mars.test",
    )
    assert raw.problems == []
    assert production["MAIL_BACKEND"] == "smtp"
    tls, _ = settings_problems(tmp_path, SMTP_SECURITY="tls", ENV="testing")
    assert tls["SMTP_PORT"] == 465


def test_production_needs_an_smtp_host(tmp_path):
    _, raw = settings_problems(tmp_path, ENV="production", SECRET_KEY="k" * 40)
    assert [p for p in raw.problems if "SMTP" in p] == [
        "MARS_SMTP_HOST: required when MARS_MAIL_BACKEND is smtp (the default in production); "
        "or set MARS_MAIL_BACKEND=files to write mails to the instance folder"
    ]
    _, raw = settings_problems(
        tmp_path,
        ENV="production",
        SECRET_KEY="k" * 40,
        MAIL_BACKEND="files",
        PUBLIC_URL="https://mars.test",
    )
    assert raw.problems == []


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"MAIL_BACKEND": "pigeon"}, "MARS_MAIL_BACKEND: Must be one of: smtp, files."),
        ({"SMTP_SECURITY": "ssl"}, "MARS_SMTP_SECURITY: Must be one of: starttls, tls, none."),
        ({"SMTP_PORT": 0}, "MARS_SMTP_PORT: Must be greater than or equal to 1"),
        ({"SMTP_TIMEOUT": 0}, "MARS_SMTP_TIMEOUT: Must be greater than 0"),
        ({"MAIL_FROM": "a@mars.test, b@mars.test"}, "MARS_MAIL_FROM: must be one address"),
        ({"MAIL_FROM": "MARS"}, "MARS_MAIL_FROM: must be one address"),
        ({"SMTP_USERNAME": "mars"}, "MARS_SMTP_USERNAME and MARS_SMTP_PASSWORD: set both"),
        ({"SMTP_PASSWORD": PASSWORD}, "MARS_SMTP_USERNAME and MARS_SMTP_PASSWORD: set both"),
        ({"SMTP_CA_FILE": "/nonexistent/ca.pem"}, "MARS_SMTP_CA_FILE: /nonexistent/ca.pem is not"),
    ],
)
def test_bad_mail_settings_are_problems(tmp_path, settings, problem):
    _, raw = settings_problems(tmp_path, ENV="testing", **settings)
    assert any(p.startswith(problem) for p in raw.problems), raw.problems
    assert not any(PASSWORD in p for p in raw.problems)


def test_a_refused_recipients_address_is_never_kept_in_the_error():
    """A job keeps its last error for days: an address in it would outlive an erasure."""
    import smtplib

    from mars_server.mail.backends import _describe

    refused = smtplib.SMTPRecipientsRefused({"ada@example.org": (550, b"no such user")})
    text = _describe(refused, None)
    assert "ada@example.org" not in text and "<address>" in text and "550" in text
