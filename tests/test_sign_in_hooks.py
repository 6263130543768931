"""The hooks that let a plugin sign people in another way (single sign-on): a button on the
sign-in page, a domain whose passwords are refused, the accounts another system vouches for,
and confirming a password before adding a way in."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa

from mars_server.auth.models import User
from mars_server.db import db
from mars_server.hookspecs import ExternalIdentity
from mars_server.http import confirm_password, external_sign_in
from tests.test_oauth import PASSWORD, csrf_of, pkce

CALLBACK = "https://www.example.org/callback"


@pytest.fixture
def door_app(install_plugins, make_app):
    install_plugins(door="door")
    app = make_app()
    result = app.test_cli_runner().invoke(
        args=[
            "apps", "create", "--first-party", "--name", "Website",
            "--redirect-uri", CALLBACK, "--scope", "account:read",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    app.website = result.output.split()[-1]
    return app


def sign_in_url(client_id):
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "scope": "account:read",
        "code_challenge": pkce()[1],
        "code_challenge_method": "S256",
    }
    return "/oauth/authorize?" + urlencode(params)


def test_hook_mars_sign_in_options(door_app):
    browser = door_app.test_client()
    url = sign_in_url(door_app.website)
    page = browser.get(url).text
    href = html.unescape(re.search(r'href="(/door/start\?[^"]+)">Sign in with the Door<', page)[1])
    query = parse_qs(urlsplit(href).query)
    assert query["next"] == [url]
    # the binding is this browser's own: another browser's page gives another
    other = door_app.test_client().get(url).text
    assert query["binding"][0] not in other
    assert len(query["binding"][0]) >= 32


def test_hook_mars_password_sign_in_refused(door_app, create_user):
    with door_app.app_context():
        from mars_server.testing import make_user

        make_user(door_app, email="ann@door.example", password=PASSWORD)
    browser = door_app.test_client()
    url = sign_in_url(door_app.website)
    page = browser.get(url)
    answer = browser.post(
        url,
        data={
            "csrf_token": csrf_of(page.text),
            "action": "sign_in",
            "email": "ann@door.example",
            "password": PASSWORD,
        },
    )
    assert answer.status_code == 200
    assert "People of door.example sign in with the Door." in answer.text
    assert 'value="sign_in"' in browser.get(url).text  # not signed in


def identity(**fields):
    return ExternalIdentity(
        **{"method": "sso:test", "email": "eve@example.test", "email_verified": True} | fields
    )


def test_hook_mars_external_sign_in(app, create_user):
    made = external_sign_in(identity(create=True, display_name="Eve", roles={"admin": True}))
    db.session.commit()
    eve = db.session.get(User, made.user_id)
    assert made.created and made.url is None and made.refused is None
    assert (eve.status, eve.display_name, eve.password_hash) == ("active", "Eve", None)
    assert eve.role_names == {"member", "admin"}

    again = external_sign_in(identity(user_id=eve.id, email="eve@elsewhere.test"))
    assert (again.user_id, again.created) == (eve.id, False)  # the link, not the address

    no_account = external_sign_in(identity(email="new@example.test"))
    assert no_account.refused and "no MARS account" in no_account.refused
    not_vouched = external_sign_in(
        identity(email="new@example.test", create=True, email_verified=False)
    )
    assert not_vouched.user_id is None and "cannot make an account" in not_vouched.refused
    owner = create_user(email="owner@example.test", password=PASSWORD)
    unverified = external_sign_in(identity(email="OWNER@example.test", email_verified=False))
    assert unverified.user_id is None and "does not confirm" in unverified.refused
    verified = external_sign_in(identity(email="OWNER@example.test"))
    assert verified.user_id == owner.id
    gone = external_sign_in(identity(user_id="usr_gone"))
    assert gone.refused == "The MARS account linked to this sign-in no longer exists."
    create_user(email="off@example.test", status="disabled")
    assert "disabled" in external_sign_in(identity(email="off@example.test")).refused
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count(User.id))) == 3  # eve, owner, off


def test_hook_mars_external_sign_in_keeps_the_last_admin_and_ignores_unknown_roles(
    app, create_user, caplog
):
    admin = create_user(email="eve@example.test", roles=("member", "admin"))
    result = external_sign_in(identity(roles={"admin": False, "wizard": True}))
    db.session.commit()
    assert result.user_id == admin.id
    assert db.session.get(User, admin.id).role_names == {"member", "admin"}
    assert "the last admin's role: kept" in caplog.text
    assert "unknown role 'wizard'" in caplog.text


def test_hook_mars_external_sign_in_hands_over_only_to_a_sign_in_page(app):
    with pytest.raises(ValueError, match="next_url"):
        external_sign_in(identity(create=True), "https://evil.example/", "binding")
    db.session.rollback()
    made = external_sign_in(identity(create=True), "/oauth/authorize?client_id=x", "binding")
    assert urlsplit(made.url).path == "/oauth/continue"
    assert parse_qs(urlsplit(made.url).query)["ticket"]
    assert parse_qs(urlsplit(made.url).query)["next"] == ["/oauth/authorize?client_id=x"]


def test_hook_mars_confirm_password(app, create_user):
    from mars_server.auth.models import Throttle

    person = create_user(email="pat@example.test", password=PASSWORD)
    assert confirm_password(person.id, PASSWORD, "192.0.2.1") is True
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Throttle)) == 0
    assert confirm_password(person.id, "not it", "192.0.2.1") is False
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Throttle)) == 2  # counted
    assert confirm_password("usr_nobody", PASSWORD, None) is False


def test_an_address_that_signs_in_elsewhere_cannot_register_a_password(door_app):
    answer = door_app.test_client().post(
        "/api/v1/accounts",
        json={"email": "new@door.example", "password": PASSWORD, "display_name": "New"},
    )
    assert answer.status_code == 422
    assert "People of door.example sign in with the Door." in str(answer.json["errors"])
    with door_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 0


def test_a_password_that_cannot_sign_in_confirms_nothing(door_app):
    """An account of a domain that signs in elsewhere may keep an old password: it neither
    signs in nor confirms a change such as linking a sign-in."""
    from mars_server.testing import make_user

    ann = make_user(door_app, email="ann@door.example", password=PASSWORD)
    with door_app.test_request_context():
        assert confirm_password(ann.id, PASSWORD, None) is False
