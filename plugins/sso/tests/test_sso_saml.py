"""Signing in to MARS with a SAML 2.0 identity provider built with pysaml2."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
import time_machine
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT
from sso_helpers import SAML_IDP_SSO, WEBSITE_CALLBACK, option_url, website_sign_in_url

from mars_server.db import db
from mars_sso.models import Identity, SeenAssertion

pytestmark = [
    pytest.mark.slow(6),
    # CI installs it (.ci/run); elsewhere, without it, these tests cannot run
    pytest.mark.skipif(
        shutil.which("xmlsec1") is None and not os.environ.get("CI"),
        reason="needs xmlsec1 (Debian package xmlsec1)",
    ),
]

ACS = "/sso/corp-saml/acs"


def users():
    from mars_server.auth.models import User

    return {user.email: user for user in db.session.scalars(sa.select(User))}


def nothing_changed():
    return users() == {} and db.session.scalar(sa.select(sa.func.count(Identity.id))) == 0


def start(browser, website, label="Sign in with Corp (SAML)"):
    """MARS's sign-in page → "Sign in with Corp (SAML)" → the identity provider's address."""
    page = browser.get(website_sign_in_url(website))
    went = browser.get(option_url(page.text, label))
    assert went.status_code == 303, went.text
    location = went.headers["Location"]
    assert location.startswith(SAML_IDP_SSO + "?")
    return location


def post_answer(browser, saml_response, relay_state, acs=ACS):
    return browser.post(acs, data={"SAMLResponse": saml_response, "RelayState": relay_state})


def test_a_signed_assertion_signs_the_person_in_to_the_website(app, website, saml_idp):
    browser = app.test_client()
    request, relay_state = saml_idp.request_of(start(browser, website))
    answer = post_answer(
        browser, saml_idp.answer(request, groups=["staff", "mars-admins"]), relay_state
    )
    assert answer.status_code == 303, answer.text
    handed = browser.get(answer.headers["Location"])
    authorized = browser.get(handed.headers["Location"])
    assert authorized.status_code == 302
    assert authorized.headers["Location"].startswith(WEBSITE_CALLBACK + "?")
    assert parse_qs(urlsplit(authorized.headers["Location"]).query)["code"]
    person = users()["ada@saml.example"]
    assert person.display_name == "Ada Lovelace" and person.role_names == {"member", "admin"}
    link = db.session.scalar(sa.select(Identity))
    assert (link.provider, link.subject, link.user_id) == ("corp-saml", "ada-0001", person.id)


def test_a_group_taken_away_at_the_provider_takes_the_role_away(
    app, website, saml_idp, create_user
):
    create_user(email="keeper@example.test", roles=("member", "admin"))  # another admin
    for groups, expected in ((["mars-admins"], {"member", "admin"}), (["staff"], {"member"})):
        browser = app.test_client()
        request, relay_state = saml_idp.request_of(start(browser, website))
        answer = post_answer(browser, saml_idp.answer(request, groups=groups), relay_state)
        assert answer.status_code == 303, answer.text
        db.session.expire_all()
        assert users()["ada@saml.example"].role_names == expected


def test_the_metadata_names_the_service_provider_and_its_consumer_service(app):
    answer = app.test_client().get("/sso/corp-saml/metadata")
    assert answer.status_code == 200 and answer.mimetype == "application/samlmetadata+xml"
    xml = answer.get_data(as_text=True)
    assert 'entityID="http://localhost/sso/corp-saml/metadata"' in xml
    assert 'Location="http://localhost/sso/corp-saml/acs"' in xml
    assert 'WantAssertionsSigned="true"' in xml


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sign": False}, "it is not signed"),
        ({"audience": "https://someone-else.example/sp"}, "cannot accept"),
        ({"destination": "https://someone-else.example/acs"}, "cannot accept"),
        ({"sha1": True}, "it is signed with SHA-1"),
        # the Response's Destination is not signed: the assertion's Recipient is what counts
        (
            {"destination": "https://someone-else.example/acs", "response_destination": False},
            "it was sent to another address",
        ),
        ({"name_id_format": NAMEID_FORMAT_TRANSIENT}, "it names nobody lastingly"),
        ({"subject": "x" * 256}, "it names nobody lastingly"),
    ],
    ids=[
        "unsigned",
        "wrong-audience",
        "wrong-recipient",
        "sha1",
        "wrong-recipient-only",
        "transient",
        "too-long-subject",
    ],
)
def test_an_assertion_mars_must_not_trust_is_refused_with_a_page(
    app, website, saml_idp, change, reason
):
    browser = app.test_client()
    request, relay_state = saml_idp.request_of(start(browser, website))
    answer = post_answer(browser, saml_idp.answer(request, **change), relay_state)
    assert answer.status_code == 400, answer.text
    assert "MARS could not sign you in" in answer.text and reason in answer.text
    assert nothing_changed()


def test_an_expired_assertion_is_refused(app, website, saml_idp):
    browser = app.test_client()
    request, relay_state = saml_idp.request_of(start(browser, website))
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with time_machine.travel(an_hour_ago, tick=True):  # valid for minutes
        old = saml_idp.answer(request)
    answer = post_answer(browser, old, relay_state)
    assert answer.status_code == 400 and "it has expired" in answer.text
    assert nothing_changed()


def test_an_assertion_for_another_request_is_refused(app, website, saml_idp):
    browser = app.test_client()
    first, _ = saml_idp.request_of(start(browser, website))
    _, second_state = saml_idp.request_of(start(browser, website))
    answer = post_answer(browser, saml_idp.answer(first), second_state)
    assert answer.status_code == 400
    assert nothing_changed()


def test_a_replayed_answer_is_refused(app, website, saml_idp):
    browser = app.test_client()
    request, relay_state = saml_idp.request_of(start(browser, website))
    response = saml_idp.answer(request)
    assert post_answer(browser, response, relay_state).status_code == 303
    replay = post_answer(app.test_client(), response, relay_state)
    assert replay.status_code == 400 and "did not start here" in replay.text


def test_an_unasked_assertion_is_refused_unless_allowed(app, saml_idp):
    unasked = saml_idp.answer(
        None,
        audience="http://localhost/sso/corp-saml/metadata",
        destination="http://localhost/sso/corp-saml/acs",
    )
    refused = post_answer(app.test_client(), unasked, "")
    assert refused.status_code == 400 and "did not start here" in refused.text
    assert nothing_changed()


def test_an_allowed_unasked_assertion_signs_in_once_and_sends_to_the_website(app, saml_idp):
    acs = "/sso/corp-saml-unasked/acs"
    unasked = saml_idp.answer(
        None,
        audience="http://localhost/sso/corp-saml-unasked/metadata",
        destination="http://localhost" + acs,
    )
    answer = post_answer(app.test_client(), unasked, "", acs=acs)
    assert answer.status_code == 200, answer.text
    assert "ada@saml.example" in users()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SeenAssertion)) == 1
    replay = post_answer(app.test_client(), unasked, "", acs=acs)
    assert replay.status_code == 400 and "was used already" in replay.text


def test_the_request_asks_for_a_lasting_name_id(app, website, saml_idp):
    request, _ = saml_idp.request_of(start(app.test_client(), website))
    assert request.name_id_policy.format == NAMEID_FORMAT_PERSISTENT
    assert request.force_authn is None


def test_a_provider_vouches_for_no_domain_another_provider_owns(
    app, website, saml_idp, create_user
):
    """corp.example signs in with the OpenID provider: the SAML one, trusted for its own
    addresses, reaches no account of that domain and makes none."""
    create_user(email="bob@corp.example")
    browser = app.test_client()
    request, relay_state = saml_idp.request_of(start(browser, website))
    answer = post_answer(browser, saml_idp.answer(request, email="bob@corp.example"), relay_state)
    assert answer.status_code == 400
    assert list(users()) == ["bob@corp.example"]
    assert db.session.scalar(sa.select(sa.func.count(Identity.id))) == 0


def test_an_app_asking_for_a_fresh_sign_in_needs_one_at_the_provider(app, website, saml_idp):
    browser = app.test_client()
    page = browser.get(website_sign_in_url(website) + "&prompt=login")
    went = browser.get(option_url(page.text, "Sign in with Corp (SAML)"))
    request, relay_state = saml_idp.request_of(went.headers["Location"])
    assert request.force_authn == "true"
    three_minutes_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3)
    with time_machine.travel(three_minutes_ago, tick=True):  # still valid, but not fresh
        stale = saml_idp.answer(request)
    answer = post_answer(browser, stale, relay_state)
    assert answer.status_code == 400 and "not asked to sign in again" in answer.text
    assert nothing_changed()
