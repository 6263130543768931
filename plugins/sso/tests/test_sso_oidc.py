"""Signing in to MARS with an OpenID Connect provider: another MARS, served on loopback."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa
import time_machine
from sso_helpers import (
    IDP_PERSON,
    PASSWORD,
    SP_BASE,
    WEBSITE_CALLBACK,
    option_url,
    website_sign_in_url,
)

from mars_server.db import db
from mars_sso.models import Identity, SignInRequest

pytestmark = pytest.mark.slow(8)


def users():
    from mars_server.auth.models import User

    return {user.email: user for user in db.session.scalars(sa.select(User))}


def audit_actions():
    from mars_server.audit.models import AuditRecord

    return [
        row.action for row in db.session.scalars(sa.select(AuditRecord).order_by(AuditRecord.id))
    ]


def start(browser, website):
    """The website sends the person to MARS's sign-in page; they choose "Sign in with Corp".
    Returns the sign-in page's address and where MARS sends the browser."""
    url = website_sign_in_url(website)
    page = browser.get(url)
    assert page.status_code == 200
    went = browser.get(option_url(page.text, "Sign in with Corp"))
    assert went.status_code == 303, went.text
    return url, went.headers["Location"]


def sign_in_with_corp(browser, website, openid_provider, email=IDP_PERSON):
    """The whole way; returns MARS's answer to the provider's redirect back."""
    _, to_provider = start(browser, website)
    back = openid_provider.sign_in(to_provider, email=email)
    assert back.startswith(f"{SP_BASE}/sso/corp/callback?"), back
    return browser.get(back)


def follow_to_website(browser, answer):
    """From MARS's answer to the provider's redirect, on to the website: its code."""
    assert answer.status_code == 303, answer.text
    handed = browser.get(answer.headers["Location"])  # /oauth/continue: the hand-over
    assert handed.status_code == 303, handed.text
    authorized = browser.get(handed.headers["Location"])  # the website's authorization
    assert authorized.status_code == 302, authorized.text
    location = authorized.headers["Location"]
    assert location.startswith(WEBSITE_CALLBACK + "?")
    return parse_qs(urlsplit(location).query)


def test_a_person_signs_in_with_the_provider_and_gets_an_account_just_in_time(
    app, website, openid_provider
):
    browser = app.test_client()
    answer = sign_in_with_corp(browser, website, openid_provider)
    query = follow_to_website(browser, answer)
    assert query["state"] == ["website-state"] and query["code"]
    person = users()[IDP_PERSON]
    assert person.status == "active" and person.display_name == "Ada Lovelace"
    assert person.password_hash is None and person.role_names == {"member"}
    link = db.session.scalar(sa.select(Identity))
    assert (link.provider, link.user_id, link.email) == ("corp", person.id, IDP_PERSON)
    assert link.subject != IDP_PERSON  # the provider's stable id, not the address
    assert {"auth.user_created", "auth.signed_in", "sso.identity_linked"} <= set(audit_actions())
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SignInRequest)) == 0


def test_the_sign_in_page_shows_the_providers(app, website):
    url = website_sign_in_url(website)
    page = app.test_client().get(url).text
    assert "Sign in with Corp" in page and "Sign in with Corp (SAML)" in page
    start_url = option_url(page, "Sign in with Corp")
    assert start_url.startswith("/sso/corp/start?")
    assert parse_qs(urlsplit(start_url).query)["next"] == [url]


def test_a_verified_address_signs_in_to_the_account_that_has_it(
    app, website, openid_provider, create_user
):
    existing = create_user(email="Ada@Corp.example", password=PASSWORD)
    browser = app.test_client()
    follow_to_website(browser, sign_in_with_corp(browser, website, openid_provider))
    assert [user.id for user in users().values()] == [existing.id]  # no second account
    assert db.session.scalar(sa.select(Identity.user_id)) == existing.id


def test_a_pending_registration_of_the_address_is_taken_over_without_its_password(
    app, website, openid_provider, create_user
):
    """Whoever registered the address first chose that password: it must not survive."""
    squatter = create_user(email=IDP_PERSON, password=PASSWORD, status="pending")
    browser = app.test_client()
    follow_to_website(browser, sign_in_with_corp(browser, website, openid_provider))
    db.session.expire_all()
    person = users()[IDP_PERSON]
    assert person.id == squatter.id and person.status == "active"
    assert person.password_hash is None


def test_roles_follow_the_claims_by_the_configured_rules(app, website, openid_provider):
    browser = app.test_client()
    follow_to_website(
        browser, sign_in_with_corp(browser, website, openid_provider, email="grace@corp.example")
    )
    assert users()["grace@corp.example"].role_names == {"member", "admin"}
    assert "auth.role_granted" in audit_actions()


def test_the_domain_that_signs_in_with_the_provider_cannot_use_a_password(
    app, website, create_user
):
    create_user(email="bob@corp.example", password=PASSWORD)
    browser = app.test_client()
    url = website_sign_in_url(website)
    page = browser.get(url)
    answer = browser.post(
        url,
        data={
            "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1),
            "action": "sign_in",
            "email": "bob@corp.example",
            "password": PASSWORD,  # the right one: refused all the same
        },
    )
    assert answer.status_code == 200
    assert "People of corp.example sign in with their organisation&#39;s account" in answer.text
    assert 'value="sign_in"' in browser.get(url).text  # still not signed in
    assert "password_not_accepted" in str(
        [row.details for row in db.session.scalars(sa.select(audit_model()))]
    )


def audit_model():
    from mars_server.audit.models import AuditRecord

    return AuditRecord


def nothing_changed():
    return users() == {} and db.session.scalar(sa.select(sa.func.count(Identity.id))) == 0


def test_an_answer_to_no_sign_in_of_ours_is_refused_with_a_page(app):
    answer = app.test_client().get("/sso/corp/callback?state=made-up&code=abc")
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    assert "This sign-in has expired, or did not start here." in answer.text
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"
    assert nothing_changed()


def test_the_providers_answer_is_used_once(app, website, openid_provider):
    browser = app.test_client()
    _, to_provider = start(browser, website)
    back = openid_provider.sign_in(to_provider)
    assert browser.get(back).status_code == 303
    again = app.test_client().get(back)
    assert again.status_code == 400 and "expired, or did not start here" in again.text


def test_a_wrong_nonce_is_refused(app, website, openid_provider):
    browser = app.test_client()
    _, to_provider = start(browser, website)
    row = db.session.scalar(sa.select(SignInRequest))
    row.nonce = "not-the-one-sent"
    db.session.commit()
    answer = browser.get(openid_provider.sign_in(to_provider))
    assert answer.status_code == 400, answer.text
    assert "Sign in with Corp sent a sign-in MARS cannot accept" in answer.text
    assert nothing_changed()


def test_a_tampered_id_token_is_refused(app, website, openid_provider, monkeypatch):
    """The provider's answer changed on its way (the address, in the signed token): its
    signature no longer holds."""
    import base64
    import json

    from authlib.integrations.requests_client import OAuth2Session

    real = OAuth2Session.fetch_token

    def tampered(self, *args, **kwargs):
        token = real(self, *args, **kwargs)
        header, payload, signature = token["id_token"].split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["email"] = "mallory@corp.example"
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        token["id_token"] = f"{header}.{forged}.{signature}"
        return token

    monkeypatch.setattr(OAuth2Session, "fetch_token", tampered)
    browser = app.test_client()
    answer = sign_in_with_corp(browser, website, openid_provider)
    assert answer.status_code == 400 and "cannot accept" in answer.text
    assert nothing_changed()


def test_a_refusal_at_the_provider_is_said_on_a_page(app, website):
    browser = app.test_client()
    _, to_provider = start(browser, website)
    state = parse_qs(urlsplit(to_provider).query)["state"][0]
    answer = browser.get(f"/sso/corp/callback?state={state}&error=access_denied")
    assert answer.status_code == 400
    assert "Sign in with Corp did not sign you in (access_denied)." in answer.text
    assert nothing_changed()


def test_a_provider_that_cannot_be_reached_is_said_on_a_page(make_app, website):
    from sso_helpers import _free_port

    down = make_app(
        PLUGINS={
            "sso": {
                "providers": [
                    {
                        "name": "corp",
                        "kind": "oidc",
                        "issuer": f"http://127.0.0.1:{_free_port()}",
                        "client_id": "x",
                    }
                ]
            }
        }
    )
    answer = down.test_client().get(
        "/sso/corp/start?" + urlencode({"next": website_sign_in_url(website), "binding": "b"})
    )
    assert answer.status_code == 502
    assert "Sign in with corp could not be reached. Try again later." in answer.text


def test_a_start_that_is_not_from_the_sign_in_page_is_refused(app):
    answer = app.test_client().get("/sso/corp/start?next=https://evil.example/&binding=x")
    assert answer.status_code == 400
    assert "did not start from MARS's sign-in page" in answer.text.replace("&#39;", "'")


# --- The hand-over to MARS's sign-in pages ------------------------------------------------------


def test_the_hand_over_works_once_and_only_in_the_browser_that_started(
    app, website, openid_provider
):
    browser = app.test_client()
    answer = sign_in_with_corp(browser, website, openid_provider)
    hand_over = answer.headers["Location"]
    other_browser = app.test_client()
    other_browser.get(website_sign_in_url(website))  # a sign-in page session of its own
    refused = other_browser.get(hand_over)
    assert refused.status_code == 400 and "started in another browser" in refused.text
    assert 'value="sign_in"' in other_browser.get(website_sign_in_url(website)).text
    assert browser.get(hand_over).status_code == 303  # the browser that started it, once
    assert browser.get(hand_over).status_code == 400


def test_a_hand_over_cannot_be_pointed_at_another_page(app, website, openid_provider):
    browser = app.test_client()
    answer = sign_in_with_corp(browser, website, openid_provider)
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    other = "/oauth/authorize?client_id=someone-else"
    moved = browser.get(
        "/oauth/continue?" + urlencode({"ticket": query["ticket"][0], "next": other})
    )
    assert moved.status_code == 400


# --- Linking a sign-in to one's own account -----------------------------------------------------


def start_link(app, openid_provider, person, auth_headers):
    """The website starts a link for ``person``; their browser signs in at the provider.
    Returns the confirmation page and the browser."""
    started = app.test_client().post(
        "/api/v1/sso/links", json={"provider": "corp"}, headers=auth_headers(person)
    )
    assert started.status_code == 201, started.json
    browser = app.test_client()
    page = browser.get(openid_provider.sign_in(started.json["authorization_url"]))
    assert page.status_code == 200, page.text
    return page, browser


def link_form(page):
    return dict(re.findall(r'name="(request_id|token)" value="([^"]+)"', page.text))


def links():
    return db.session.scalar(sa.select(sa.func.count(Identity.id)))


def test_a_person_links_the_provider_to_their_account_themselves(
    app, website, openid_provider, create_user, auth_headers
):
    person = create_user(email="ada.home@example.test", password=PASSWORD)
    page, browser = start_link(app, openid_provider, person, auth_headers)
    assert "ada.home@example.test" in page.text and IDP_PERSON in page.text
    assert 'type="password"' in page.text
    assert links() == 0  # not before "Link them"
    form = link_form(page)
    wrong = browser.post("/sso/corp/link", data=form | {"action": "link", "password": "nope"})
    assert wrong.status_code == 422 and "The password is wrong." in wrong.text
    assert links() == 0
    done = browser.post("/sso/corp/link", data=form | {"action": "link", "password": PASSWORD})
    assert done.status_code == 200 and "you can now sign in to MARS with" in done.text
    again = browser.post("/sso/corp/link", data=form | {"action": "link", "password": PASSWORD})
    assert again.status_code == 400

    follow_to_website(browser, sign_in_with_corp(browser, website, openid_provider))
    assert IDP_PERSON not in users()  # signed in to the linked account, none made
    api, headers = app.test_client(), auth_headers(person)
    listed = api.get("/api/v1/sso/identities", headers=headers).json["items"]
    assert [(item["provider"], item["email"]) for item in listed] == [("corp", IDP_PERSON)]
    assert listed[0]["last_sign_in_at"] is not None
    gone = api.delete(f"/api/v1/sso/identities/{listed[0]['id']}", headers=headers)
    assert gone.status_code == 204
    assert api.get("/api/v1/sso/identities", headers=headers).json["items"] == []


def test_a_link_someone_started_for_their_own_account_cannot_take_anothers_identity(
    app, openid_provider, create_user, auth_headers
):
    """Mallory starts a link for her account and sends the address to Ada: Ada signs in at
    the provider, but only Mallory's password would link it."""
    mallory = create_user(email="mallory@example.test", password=PASSWORD)
    page, browser = start_link(app, openid_provider, mallory, auth_headers)
    ada_guesses = browser.post(
        "/sso/corp/link", data=link_form(page) | {"action": "link", "password": "Ada's own"}
    )
    assert ada_guesses.status_code == 422
    assert links() == 0


def test_a_cancelled_link_is_forgotten(app, openid_provider, create_user, auth_headers):
    person = create_user(email="ada.home@example.test", password=PASSWORD)
    page, browser = start_link(app, openid_provider, person, auth_headers)
    form = link_form(page)
    forged = browser.post("/sso/corp/link", data={**form, "token": "guess", "action": "cancel"})
    assert forged.status_code == 400
    cancelled = browser.post("/sso/corp/link", data=form | {"action": "cancel"})
    assert cancelled.status_code == 200 and "Nothing was linked." in cancelled.text
    after = browser.post("/sso/corp/link", data=form | {"action": "link", "password": PASSWORD})
    assert after.status_code == 400
    assert links() == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SignInRequest)) == 0


def test_a_link_needs_a_provider_that_exists(app, create_user, auth_headers):
    person = create_user(email="ada.home@example.test", password=PASSWORD)
    answer = app.test_client().post(
        "/api/v1/sso/links", json={"provider": "nobody"}, headers=auth_headers(person)
    )
    assert answer.status_code == 422 and answer.mimetype == "application/problem+json"


# --- What the provider may vouch for -------------------------------------------------------


def test_a_provider_with_domains_vouches_for_no_other_address(
    app, website, openid_provider, create_user
):
    """Corp's provider owns corp.example: an address elsewhere, verified or not, reaches no
    account and makes none."""
    create_user(email="eve@elsewhere.example", password=PASSWORD)
    browser = app.test_client()
    answer = sign_in_with_corp(browser, website, openid_provider, email="eve@elsewhere.example")
    assert answer.status_code == 400
    assert "does not confirm" in answer.text.replace("&#39;", "'")
    assert list(users()) == ["eve@elsewhere.example"] and links() == 0


def test_an_address_the_provider_does_not_confirm_makes_no_account(app):
    from mars_sso import services

    corp = services.provider("corp")
    outcome = services.complete(
        corp, None, "someone-1", {"email": "new@corp.example", "email_verified": False}
    )
    assert outcome.page == "error.html"
    assert "cannot make an account" in outcome.context["message"]
    assert users() == {} and links() == 0


# --- Fresh sign-ins, expiry, broken input --------------------------------------------------


def test_an_app_asking_for_a_fresh_sign_in_gets_one_at_the_provider(app, website, openid_provider):
    browser = app.test_client()
    url = website_sign_in_url(website) + "&prompt=login"
    page = browser.get(url)
    went = browser.get(option_url(page.text, "Sign in with Corp"))
    to_provider = went.headers["Location"]
    assert parse_qs(urlsplit(to_provider).query)["prompt"] == ["login"]
    follow_to_website(browser, browser.get(openid_provider.sign_in(to_provider)))


def test_a_sign_in_the_provider_made_before_is_not_fresh_enough(
    app, website, openid_provider, monkeypatch
):
    from mars_sso.models import SignInRequest

    browser = app.test_client()
    page = browser.get(website_sign_in_url(website) + "&max_age=0")
    to_provider = browser.get(option_url(page.text, "Sign in with Corp")).headers["Location"]
    back = openid_provider.sign_in(to_provider)
    row = db.session.scalar(sa.select(SignInRequest))
    row.created_at = row.created_at + dt.timedelta(minutes=10)  # as if asked much later
    db.session.commit()
    answer = browser.get(back)
    assert answer.status_code == 400
    assert "did not ask you to sign in again" in answer.text
    assert users() == {}


def test_an_answer_after_the_sign_in_expired_is_refused(app, website, openid_provider):
    browser = app.test_client()
    _, to_provider = start(browser, website)
    back = openid_provider.sign_in(to_provider)
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=11)):
        answer = browser.get(back)
    assert answer.status_code == 400 and "expired" in answer.text
    assert users() == {}


def test_a_hand_over_expires_after_two_minutes(app, website, openid_provider):
    browser = app.test_client()
    answer = sign_in_with_corp(browser, website, openid_provider)
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)):
        late = browser.get(answer.headers["Location"])
    assert late.status_code == 400
    assert 'value="sign_in"' in browser.get(website_sign_in_url(website)).text


@pytest.mark.parametrize(
    "query",
    ["state=%00", "state=abc%00def&code=x", "state=" + "x" * 65],
    ids=["nul", "nul-inside", "too-long"],
)
def test_a_malformed_answer_is_a_page_not_an_error(app, query):
    answer = app.test_client().get(f"/sso/corp/callback?{query}")
    assert answer.status_code == 400 and "did not start here" in answer.text


def test_a_start_with_a_nul_is_refused_with_a_page(app, website):
    url = "/sso/corp/start?" + urlencode({"next": website_sign_in_url(website), "binding": "a\0b"})
    answer = app.test_client().get(url)
    assert answer.status_code == 400


def test_a_provider_whose_discovery_names_another_issuer_is_refused(
    make_app, website, openid_provider
):
    """OpenID Connect Discovery: the issuer is the one configured, exactly (mix-up)."""
    other = make_app(
        PLUGINS={
            "sso": {
                "providers": [
                    {
                        "name": "corp",
                        "kind": "oidc",
                        "issuer": openid_provider.url + "/",
                        "client_id": openid_provider.client_id,
                    }
                ]
            }
        }
    )
    query = urlencode({"next": website_sign_in_url(website), "binding": "b"})
    answer = other.test_client().get(f"/sso/corp/start?{query}")
    assert answer.status_code == 502 and "its issuer differs" in answer.text


def test_settings_that_make_no_sense_stop_start_up(make_app):
    from mars_server.config import ConfigError

    saml = {"name": "x", "kind": "saml", "idp_metadata": "<x/>"}
    for bad in (
        saml | {"clock_skew_seconds": 301},
        saml | {"name_id_format": "transient"},
        {"name": "y", "kind": "oidc", "issuer": "http://idp.example", "client_id": "c"},
        {"name": "Bad Name", "kind": "saml", "idp_metadata": "<x/>"},
    ):
        with pytest.raises(ConfigError):
            make_app(PLUGINS={"sso": {"providers": [bad]}})
