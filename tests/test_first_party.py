"""The website's own sign-in: first-party apps, the pages around the sign-in page (register,
forgotten password, verified), a new verification link, and signing out (RP-initiated logout)."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa

from mars_server.auth.models import OAuthClient, OAuthConsent, User
from mars_server.db import db
from tests.mailbox import development_mail as mailbox
from tests.mailbox import link_token
from tests.test_oauth import PASSWORD, authorize_url, pkce, sign_in

WEBSITE = "https://www.example.org/"
CALLBACK = "https://www.example.org/callback"


@pytest.fixture
def website(app, runner):
    """The website, declared by the operator; returns its client_id."""
    result = runner.invoke(
        args=[
            "apps", "create", "--first-party", "--name", "Website",
            "--redirect-uri", CALLBACK, "--post-logout-redirect-uri", WEBSITE,
            "--scope", "account:read", "--scope", "projects:read",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output.split()[-1]


@pytest.fixture
def person(create_user):
    return create_user(email="ada@example.test", password=PASSWORD)


def plain_text(mail) -> str:
    part = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    return part.get_payload(decode=True).decode()


def signed_in_code(browser, client_id):
    """Sign in on the website's behalf; return the code and verifier it gets back."""
    verifier, challenge = pkce()
    url = authorize_url(client_id, challenge, redirect_uri=CALLBACK)
    assert sign_in(browser, url, email="ada@example.test").status_code == 303
    answer = browser.get(url)
    assert answer.status_code == 302, answer.text  # no consent page
    location = answer.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    return parse_qs(urlsplit(location).query)["code"][0], verifier


def tokens_for(browser, client_id):
    code, verifier = signed_in_code(browser, client_id)
    answer = browser.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
            "client_id": client_id,
        },
    )
    assert answer.status_code == 200, answer.json
    return answer.json


def refreshed(client, client_id, refresh_token):
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        },
    )


# --- First-party apps ----------------------------------------------------------------------------


def test_the_operator_declares_a_first_party_app(app, runner, website):
    row = db.session.scalar(sa.select(OAuthClient).where(OAuthClient.client_id == website))
    assert (row.first_party, row.client_type, row.owner_id, row.secret_digest) == (
        True,
        "public",
        None,
        None,
    )
    assert row.redirect_uris == [CALLBACK] and row.post_logout_redirect_uris == [WEBSITE]
    assert row.scopes == "account:read projects:read"
    listed = runner.invoke(args=["apps", "list"]).output
    assert f"{website}  first-party   Website  [account:read projects:read]" in listed
    deleted = runner.invoke(args=["apps", "delete", website, "--yes"])
    assert deleted.exit_code == 0 and db.session.get(OAuthClient, row.id) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--redirect-uri", "http://www.example.org/cb", "--scope", "account:read"], "https://"),
        (["--redirect-uri", CALLBACK, "--scope", "no:such"], "no:such"),
        (["--redirect-uri", CALLBACK], "Missing option '--scope'"),
    ],
)
def test_a_bad_first_party_app_is_refused_in_one_line(app, runner, args, message):
    result = runner.invoke(args=["apps", "create", "--first-party", "--name", "W", *args])
    assert result.exit_code != 0 and message in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OAuthClient)) == 0


def test_only_first_party_apps_are_declared_from_the_command_line(app, runner):
    result = runner.invoke(
        args=["apps", "create", "--name", "W", "--redirect-uri", CALLBACK, "--scope", "x"]
    )
    assert result.exit_code != 0 and "--first-party" in result.output


def test_a_first_party_app_gets_its_code_without_a_consent_page(app, website, person):
    browser = app.test_client()
    code, _ = signed_in_code(browser, website)
    assert code
    consent = db.session.get(OAuthConsent, (person.id, website))
    assert consent is not None and consent.scope == "account:read"  # recorded all the same


# --- The pages around the sign-in page -----------------------------------------------------------


def form_token(html):
    return re.search(r'name="form_token" value="([^"]+)"', html).group(1)


def test_the_sign_in_page_links_to_register_and_to_a_forgotten_password(app, website):
    url = authorize_url(website, pkce()[1], redirect_uri=CALLBACK)
    page = app.test_client().get(url).text
    assert "Forgot your password?" in page and "Create an account" in page
    for path in ("/accounts/forgot-password", "/accounts/register"):
        href = html.unescape(re.search(f'href="({path}[^"]*)"', page).group(1))
        assert parse_qs(urlsplit(href).query) == {"next": [url]}


def test_registering_on_the_page_leads_back_to_the_sign_in(app, website):
    sign_in_url = authorize_url(website, pkce()[1], redirect_uri=CALLBACK)
    browser = app.test_client()
    page = browser.get("/accounts/register?" + urlencode({"next": sign_in_url}))
    assert page.status_code == 200 and page.headers["X-Frame-Options"] == "DENY"
    cookie = browser.get_cookie("mars_form", path="/accounts")
    assert cookie.http_only and cookie.same_site == "Strict"
    created = browser.post(
        "/accounts/register",
        data={
            "form_token": form_token(page.text),
            "email": "grace@example.test",
            "display_name": "Grace",
            "password": PASSWORD,
            "next": sign_in_url,
        },
    )
    assert created.status_code == 200 and "Check your mail" in created.text
    user = db.session.scalar(sa.select(User).where(User.email == "grace@example.test"))
    assert (user.status, user.display_name) == ("pending", "Grace")
    [mail] = mailbox(app)
    link = re.search(r"https?://\S+", plain_text(mail)).group(0)
    assert parse_qs(urlsplit(link).query)["next"] == [sign_in_url]
    opened = browser.get(urlsplit(link).path + "?" + urlsplit(link).query)
    assert 'name="next"' in opened.text
    verified = browser.post(
        "/accounts/verify", data={"token": link_token(mail), "next": sign_in_url}
    )
    assert "Your address is confirmed" in verified.text
    assert f'href="{sign_in_url}"'.replace("&", "&amp;") in verified.text
    db.session.expire_all()
    assert db.session.get(User, user.id).status == "active"


def test_the_forms_refuse_a_post_without_this_browsers_token(app):
    browser = app.test_client()
    page = browser.get("/accounts/register")
    other_browser = app.test_client()
    refused = other_browser.post(
        "/accounts/register",
        data={"form_token": form_token(page.text), "email": "x@example.test", "password": PASSWORD},
    )
    assert refused.status_code == 400 and "expired" in refused.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
    assert mailbox(app) == []


def test_a_weak_password_is_shown_on_the_form_and_nothing_is_created(app):
    browser = app.test_client()
    page = browser.get("/accounts/register")
    refused = browser.post(
        "/accounts/register",
        data={
            "form_token": form_token(page.text),
            "email": "x@example.test",
            "password": "password1",
        },
    )
    assert refused.status_code == 422 and "most common" in refused.text
    assert 'value="x@example.test"' in refused.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


@pytest.mark.parametrize(
    "next_value",
    [
        "https://evil.example/oauth/authorize?x=1",
        "//evil.example/",
        "/accounts/verify",
        "/oauth/authorize\\x",
    ],
)
def test_only_a_sign_in_of_this_server_is_a_way_back(app, next_value):
    page = app.test_client().get("/accounts/register?" + urlencode({"next": next_value}))
    assert 'name="next"' not in page.text and "evil" not in page.text


def test_the_forgotten_password_page_mails_a_reset_link(app, person):
    browser = app.test_client()
    page = browser.get("/accounts/forgot-password")
    sent = browser.post(
        "/accounts/forgot-password",
        data={"form_token": form_token(page.text), "email": "ada@example.test"},
    )
    assert sent.status_code == 200 and "Check your mail" in sent.text
    [mail] = mailbox(app)
    assert "/accounts/reset-password?token=" in plain_text(mail)
    unknown = browser.post(
        "/accounts/forgot-password",
        data={"form_token": form_token(page.text), "email": "nobody@example.test"},
    )
    assert unknown.text.replace("nobody", "ada") == sent.text  # the same answer
    assert len(mailbox(app)) == 1


def test_the_verified_page_leads_to_the_website(make_app):
    app = make_app(WEBSITE_URL=WEBSITE)
    with app.app_context():
        browser = app.test_client()
        browser.post("/api/v1/accounts", json={"email": "lin@example.test", "password": PASSWORD})
        [mail] = mailbox(app)
        verified = browser.post("/accounts/verify", data={"token": link_token(mail)})
        assert f'href="{WEBSITE}"' in verified.text


# --- A new verification link ----------------------------------------------------------------------


def test_a_new_verification_link_answers_the_same_for_every_address(app, create_user):
    client = app.test_client()
    create_user(email="waiting@example.test", status="pending")
    create_user(email="active@example.test")
    answers = [
        client.post("/api/v1/accounts/verification", json={"email": email})
        for email in ("waiting@example.test", "active@example.test", "nobody@example.test")
    ]
    assert {(a.status_code, a.data) for a in answers} == {(202, answers[0].data)}
    [mail] = mailbox(app)
    assert mail["To"] == "waiting@example.test"
    assert "/accounts/verify?token=" in plain_text(mail)


def test_new_verification_links_are_throttled(make_app):
    app = make_app(PLUGINS={"auth": {"account_mail_requests_per_address": 3}})
    with app.app_context():
        client = app.test_client()
        for _ in range(3):
            body = {"email": "someone@example.test"}
            assert client.post("/api/v1/accounts/verification", json=body).status_code == 202
        refused = client.post("/api/v1/accounts/verification", json={"email": "x@example.test"})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        assert refused.mimetype == "application/problem+json"


# --- Signing out ----------------------------------------------------------------------------


def test_signing_out_ends_the_session_and_kills_this_browsers_refresh_token(app, website, person):
    browser, other_browser = app.test_client(), app.test_client()
    here, there = tokens_for(browser, website), tokens_for(other_browser, website)
    params = {"client_id": website, "post_logout_redirect_uri": WEBSITE, "state": "s1"}
    # Without an ID token as a hint, even the website's own request is confirmed by the
    # person: no other site can sign them out (a link, a redirect) behind their back.
    page = browser.get("/oauth/logout?" + urlencode(params))
    assert page.status_code == 200 and "Sign out of MARS?" in page.text
    # the confirmation's answer sends the browser back to the website: its form may lead there
    assert "form-action" not in page.headers["Content-Security-Policy"]
    still = refreshed(app.test_client(), website, here["refresh_token"])  # still signed in
    assert still.status_code == 200
    here = still.json
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    out = browser.post(
        "/oauth/logout?" + urlencode(params), data={"action": "sign_out", "csrf_token": csrf}
    )
    assert out.status_code == 303 and out.headers["Location"] == WEBSITE + "?state=s1"
    dead = refreshed(app.test_client(), website, here["refresh_token"])
    assert dead.status_code == 400 and dead.json["error"] == "invalid_grant"
    me = app.test_client().get(
        "/api/v1/me", headers={"Authorization": f"Bearer {here['access_token']}"}
    )
    assert me.status_code == 401
    # The other browser's sign-in and tokens are its own.
    assert refreshed(app.test_client(), website, there["refresh_token"]).status_code == 200
    # This browser signs in again: the sign-in page, not a code.
    url = authorize_url(website, pkce()[1], redirect_uri=CALLBACK)
    assert 'value="sign_in"' in browser.get(url).text
    audited = db.session.execute(
        sa.text("SELECT count(*) FROM mars_audit_log WHERE action = 'auth.signed_out'")
    ).scalar()
    assert audited == 1


def test_sign_out_never_sends_the_browser_to_an_unregistered_address(app, website):
    for params in (
        {"client_id": website, "post_logout_redirect_uri": "https://evil.example/"},
        {"post_logout_redirect_uri": WEBSITE},
        {"client_id": "nobody", "post_logout_redirect_uri": WEBSITE},
    ):
        answer = app.test_client().get("/oauth/logout?" + urlencode(params))
        assert answer.status_code == 400 and "Location" not in answer.headers


def test_other_apps_sign_out_only_after_the_person_confirms(app, person, auth_headers):
    created = app.test_client().post(
        "/api/v1/apps",
        json={
            "name": "Other",
            "client_type": "public",
            "redirect_uris": [CALLBACK],
            "scopes": ["account:read"],
            "grant_types": ["authorization_code", "refresh_token"],
        },
        headers=auth_headers(person, ["apps:write", "account:read"]),
    )
    client_id = created.json["client_id"]
    browser = app.test_client()
    url = authorize_url(client_id, pkce()[1], redirect_uri=CALLBACK)
    assert sign_in(browser, url, email="ada@example.test").status_code == 303
    page = browser.get("/oauth/logout?" + urlencode({"client_id": client_id}))
    assert page.status_code == 200 and "Sign out of MARS?" in page.text
    assert 'value="sign_in"' not in browser.get(url).text  # still signed in
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    forged = app.test_client().post(
        "/oauth/logout", data={"client_id": client_id, "action": "sign_out", "csrf_token": csrf}
    )
    assert forged.status_code == 400
    done = browser.post(
        "/oauth/logout", data={"client_id": client_id, "action": "sign_out", "csrf_token": csrf}
    )
    assert done.status_code == 200 and "You are signed out" in done.text
    assert 'value="sign_in"' in browser.get(url).text


# --- The example website, in development -------------------------------------------------


def test_the_example_website_is_served_in_development_only(make_app, tmp_path):
    development = make_app(ENV="development")
    with development.app_context():
        browser = development.test_client()
        assert "<script" in browser.get("/examples/website/").text
        config = browser.get("/examples/website/config.json").json
        assert config["redirect_uri"] == "http://localhost/examples/website/"
        again = browser.get("/examples/website/config.json").json
        assert again["client_id"] == config["client_id"]  # declared once
        row = db.session.scalar(
            sa.select(OAuthClient).where(OAuthClient.client_id == config["client_id"])
        )
        assert row.first_party and row.name == "Example website"
        assert browser.get("/examples/website/../../setup.cfg").status_code == 404
        # A name from the Host header that is not loopback's (DNS rebinding) adds nothing.
        rebound = browser.get("/examples/website/config.json", headers={"Host": "evil.example"})
        assert rebound.status_code == 404
        db.session.refresh(row)
        assert row.redirect_uris == ["http://localhost/examples/website/"]
    testing = make_app()
    with testing.app_context():
        assert testing.test_client().get("/examples/website/").status_code == 404
        assert testing.test_client().get("/examples/website/config.json").status_code == 404


def test_a_way_back_leads_only_to_a_first_party_sign_in_that_shows_its_page(app, website):
    browser = app.test_client()
    first_party = authorize_url(website, pkce()[1], redirect_uri=CALLBACK)
    for next_value, kept in (
        (first_party, True),
        (first_party + "&prompt=none", False),  # it would go straight back to the app
        (authorize_url("mars_app_someone_elses", pkce()[1]), False),
    ):
        page = browser.get("/accounts/register?" + urlencode({"next": next_value}))
        assert ('name="next"' in page.text) is kept, next_value


def test_a_password_someone_registered_first_never_survives_the_owners_registration(app):
    """Pre-hijacking: someone registers the owner's address first, with a password of theirs."""
    from mars_server.auth import signin

    client = app.test_client()
    body = {"email": "owner@example.test", "display_name": "Owner"}
    client.post("/api/v1/accounts", json={**body, "password": "the intruder's own phrase"})
    client.post("/api/v1/accounts", json={**body, "password": "the owner's real phrase"})
    first, second = mailbox(app)
    replaced = client.post("/accounts/verify", data={"token": link_token(first)})
    assert replaced.status_code == 400 and "no longer works" in replaced.text
    confirmed = client.post("/accounts/verify", data={"token": link_token(second)})
    assert "Your address is confirmed" in confirmed.text
    assert signin.authenticate("owner@example.test", "the owner's real phrase", None)
    with pytest.raises(signin.SignInFailed):
        signin.authenticate("owner@example.test", "the intruder's own phrase", None)
    # Once active, a registration changes nothing and sends nothing.
    client.post("/api/v1/accounts", json={**body, "password": "the intruder's own phrase"})
    assert len(mailbox(app)) == 2
    with pytest.raises(signin.SignInFailed):
        signin.authenticate("owner@example.test", "the intruder's own phrase", None)
