"""The single sign-on operations through the Python SDK, against a live MARS (the public
``sdk`` fixture). MARS's SDK coverage meta-test runs these: they are marked ``mars_sdk_live``."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sso_helpers import PASSWORD

from mars_server.db import db
from mars_server.testing import make_user
from mars_sso.models import Identity

pytestmark = pytest.mark.mars_sdk_live

mars_sdk = pytest.importorskip("mars_sdk")


def test_providers_links_and_identities(app, sdk, openid_provider):
    providers = sdk(anonymous=True).sso.list_providers()
    assert [(p.name, p.kind) for p in providers][:2] == [("corp", "oidc"), ("corp-saml", "saml")]

    client = sdk(make_user(app, email="sam@example.test", password=PASSWORD))
    with pytest.raises(mars_sdk.ValidationError):
        client.sso.start_link(provider="nobody")
    started = client.sso.start_link(provider="corp")
    to_provider = urlsplit(started.authorization_url)
    assert f"{to_provider.scheme}://{to_provider.netloc}" == openid_provider.url
    assert parse_qs(to_provider.query)["code_challenge_method"] == ["S256"]

    db.session.add(
        Identity(provider="corp", subject="sam-1", user_id=client.user.id, email="sam@corp.example")
    )
    db.session.commit()
    linked = client.sso.identities.list()
    assert [(i.provider, i.email) for i in linked] == [("corp", "sam@corp.example")]
    client.sso.identities.unlink(identity_id=linked[0].id)
    assert client.sso.identities.list() == []
    with pytest.raises(mars_sdk.NotFound):
        client.sso.identities.unlink(identity_id=linked[0].id)
