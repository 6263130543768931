"""Signing in to MARS with an OpenID Connect provider: another MARS, served on loopback."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa
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


def test_a_person_links_the_provider_to_their_account_themselves(
    app, website, openid_provider, create_user, auth_headers
):
    person = create_user(email="ada.home@example.test", password=PASSWORD)
    api = app.test_client()
    headers = auth_headers(person)
    wrong = api.post(
        "/api/v1/sso/links", json={"provider": "corp", "password": "nope"}, headers=headers
    )
    assert wrong.status_code == 422 and wrong.mimetype == "application/problem+json"
    started = api.post(
        "/api/v1/sso/links", json={"provider": "corp", "password": PASSWORD}, headers=headers
    )
    assert started.status_code == 201, started.json
    back = openid_provider.sign_in(started.json["authorization_url"])
    browser = app.test_client()
    page = browser.get(back)
    assert page.status_code == 200
    assert "ada.home@example.test" in page.text and IDP_PERSON in page.text
    assert db.session.scalar(sa.select(sa.func.count(Identity.id))) == 0  # not before "Link"
    form = dict(re.findall(r'name="(request_id|token)" value="([^"]+)"', page.text))
    done = browser.post("/sso/corp/link", data=form | {"action": "link"})
    assert done.status_code == 200 and "you can now sign in to MARS with" in done.text
    assert browser.post("/sso/corp/link", data=form | {"action": "link"}).status_code == 400

    follow_to_website(browser, sign_in_with_corp(browser, website, openid_provider))
    assert IDP_PERSON not in users()  # signed in to the linked account, none made
    listed = api.get("/api/v1/sso/identities", headers=headers).json["items"]
    assert [(item["provider"], item["email"]) for item in listed] == [("corp", IDP_PERSON)]
    assert listed[0]["last_sign_in_at"] is not None
    gone = api.delete(f"/api/v1/sso/identities/{listed[0]['id']}", headers=headers)
    assert gone.status_code == 204
    assert api.get("/api/v1/sso/identities", headers=headers).json["items"] == []


def test_a_link_is_not_made_without_the_persons_confirmation(
    app, openid_provider, create_user, auth_headers
):
    person = create_user(email="ada.home@example.test", password=PASSWORD)
    started = app.test_client().post(
        "/api/v1/sso/links",
        json={"provider": "corp", "password": PASSWORD},
        headers=auth_headers(person),
    )
    page = app.test_client().get(openid_provider.sign_in(started.json["authorization_url"]))
    form = dict(re.findall(r'name="(request_id|token)" value="([^"]+)"', page.text))
    cancelled = app.test_client().post("/sso/corp/link", data=form | {"action": "cancel"})
    assert cancelled.status_code == 200 and "Nothing was linked." in cancelled.text
    forged = app.test_client().post(
        "/sso/corp/link",
        data={"request_id": form["request_id"], "token": "guess", "action": "link"},
    )
    assert forged.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count(Identity.id))) == 0
