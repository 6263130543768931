"""The pages the links in account e-mails open, followed from mail a real SMTP server received."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
import sqlalchemy as sa

from mars_server.auth import signin
from mars_server.auth.models import User
from mars_server.db import db
from mars_server.testing import make_user, run_due_jobs
from tests.mailbox import text_links

PASSWORD = "correct horse battery staple"


class Form(HTMLParser):
    """The one form of a page: its action and its fields' names and values."""

    def __init__(self, html: str):
        super().__init__()
        self.action = None
        self.fields: dict[str, str] = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            assert self.action is None, "one form per page"
            self.action = attrs["action"]
        elif tag == "input":
            self.fields[attrs["name"]] = attrs.get("value") or ""


def link_from(app, inbox) -> str:
    """The link in the last mail, once the app's worker has sent what was queued."""
    run_due_jobs(app)
    *_, message = inbox.messages
    [url] = text_links(message.get_body(("plain",)).get_content())
    return url


@pytest.fixture
def mail_app(smtp_app):
    return smtp_app()


def test_registering_then_following_the_link_activates_the_account(mail_app):
    app, inbox = mail_app
    client = app.test_client()
    response = client.post(
        "/api/v1/accounts", json={"email": "ada@example.test", "password": PASSWORD}
    )
    assert response.status_code == 202
    url = link_from(app, inbox)
    assert url.startswith("http://localhost/accounts/verify?token=")

    page = client.get(url)  # opening the link only shows the button: scanners use up nothing
    assert page.status_code == 200
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    form = Form(page.text)
    assert client.get(url).status_code == 200

    done = client.post(form.action, data=form.fields)
    assert done.status_code == 200
    assert "Your address is confirmed" in done.text
    with app.app_context():
        user = db.session.scalars(sa.select(User).filter_by(email="ada@example.test")).one()
        assert user.status == "active"

    again = client.post(form.action, data=form.fields)
    assert again.status_code == 400
    assert "no longer works" in again.text
    assert client.get(url).status_code == 400


def test_the_reset_link_sets_a_new_password_once(mail_app, create_user):
    app, inbox = mail_app
    create_user(email="grace@example.test", password=PASSWORD)
    client = app.test_client()
    response = client.post("/api/v1/accounts/password-reset", json={"email": "grace@example.test"})
    assert response.status_code == 202
    url = link_from(app, inbox)
    assert url.startswith("http://localhost/accounts/reset-password?token=")

    form = Form(client.get(url).text)
    assert set(form.fields) == {"token", "password", "password_again"}
    new = "an entirely new passphrase"

    mismatch = client.post(
        form.action, data={**form.fields, "password": new, "password_again": new + "!"}
    )
    assert mismatch.status_code == 422
    assert "The two passwords differ." in mismatch.text

    weak = client.post(
        form.action, data={**form.fields, "password": "password1", "password_again": "password1"}
    )
    assert weak.status_code == 422
    assert 'role="alert"' in weak.text
    assert Form(weak.text).fields["token"] == form.fields["token"]  # the form can be tried again

    done = client.post(form.action, data={**form.fields, "password": new, "password_again": new})
    assert done.status_code == 200
    assert "Your password is changed" in done.text
    with app.app_context():
        assert signin.authenticate("grace@example.test", new, "127.0.0.1").email == (
            "grace@example.test"
        )
        with pytest.raises(signin.SignInFailed):
            signin.authenticate("grace@example.test", PASSWORD, "127.0.0.1")

    replay = client.post(form.action, data={**form.fields, "password": new, "password_again": new})
    assert replay.status_code == 400


@pytest.mark.parametrize("path", ["/accounts/verify", "/accounts/reset-password"])
@pytest.mark.parametrize("token", ["", "not-a-token", "x" * 5000])
def test_a_bad_link_says_so_and_changes_nothing(app, path, token):
    client = app.test_client()
    assert client.get(path, query_string={"token": token}).status_code == 400
    response = client.post(
        path, data={"token": token, "password": "p" * 20, "password_again": "p" * 20}
    )
    assert response.status_code == 400
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", ["/api/v1/accounts/password-reset", "/api/v1/accounts"])
def test_a_forged_host_header_does_not_move_the_links(smtp_app, create_user, path):
    app, inbox = smtp_app(PUBLIC_URL="https://mars.example.org")
    body = {"email": "grace@example.test"}
    if path == "/api/v1/accounts":
        body = {"email": "new@example.test", "password": PASSWORD}
    else:
        create_user(email="grace@example.test", password=PASSWORD)
    client = app.test_client()
    response = client.post(path, json=body, headers={"Host": "evil.example"})
    assert response.status_code == 202
    url = link_from(app, inbox)
    assert url.startswith("https://mars.example.org/accounts/"), url
    assert "evil.example" not in inbox.messages[-1].as_string()


def test_the_oauth_issuer_is_the_public_address(make_app):
    app = make_app(PUBLIC_URL="https://mars.example.org/")
    metadata = app.test_client().get(
        "/.well-known/oauth-authorization-server", headers={"Host": "evil.example"}
    )
    assert metadata.json["issuer"] == "https://mars.example.org"
    assert metadata.json["token_endpoint"] == "https://mars.example.org/oauth/token"


def test_a_reset_mailed_from_the_command_line_links_to_the_public_address(smtp_app):
    app, inbox = smtp_app(PUBLIC_URL="https://mars.example.org")
    make_user(app, email="grace@example.test")
    result = app.test_cli_runner().invoke(args=["users", "reset-password", "grace@example.test"])
    assert result.exit_code == 0, result.output
    assert link_from(app, inbox).startswith("https://mars.example.org/accounts/reset-password?")
