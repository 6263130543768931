"""Real identity providers, running inside the tests.

- OpenID Connect: a second MARS, on its own database, served over HTTP on loopback; MARS
  under test signs people in with it exactly as with any OpenID provider (discovery, JWKS).
- SAML 2.0: an identity provider built with pysaml2, with its own signing key; the tests play
  the browser between it and MARS.
"""

from __future__ import annotations

import os
import threading

import pytest
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from sso_helpers import (
    IDP_PERSON,
    PASSWORD,
    SP_BASE,
    WEBSITE_CALLBACK,
    OpenIDProvider,
    SamlIdentityProvider,
    _free_port,
    _idp_config,
    provider_settings,
)
from werkzeug.serving import make_server

from mars_server import create_app
from mars_server.testing import make_user, settings_for_tests


@pytest.fixture(scope="session")
def openid_provider(tmp_path_factory):
    """A second MARS, the organisation's identity provider, with one person and an app for
    MARS under test (a confidential client allowed ``openid email profile``)."""
    yield from _serve_openid_provider(tmp_path_factory, "127.0.0.1")


@pytest.fixture(scope="session")
def browser_openid_provider(tmp_path_factory):
    """The same, reached as ``localhost``: a browser keeps its cookies apart from those of
    MARS under test at 127.0.0.1 (cookies do not tell ports apart)."""
    yield from _serve_openid_provider(tmp_path_factory, "localhost")


def _serve_openid_provider(tmp_path_factory, host):
    from mars_server.auth import apps
    from mars_server.auth.models import User
    from mars_server.db import db
    from mars_server.ops import migrations

    folder = tmp_path_factory.mktemp("idp")
    url = f"http://{host}:{_free_port()}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in [n for n in os.environ if n.startswith("MARS_")]:
            if not name.startswith("MARS_TEST_"):
                monkeypatch.delenv(name)
        app = create_app(
            settings_for_tests(
                f"sqlite:///{folder / 'idp.db'}",
                folder / "instance",
                PUBLIC_URL=url,
                PLUGINS_DISABLED=["sso"],
            )
        )
    with app.app_context():
        migrations.upgrade()
        owner = make_user(app, email="it@corp.example", password=PASSWORD)
        make_user(app, email=IDP_PERSON, password=PASSWORD, display_name="Ada Lovelace")
        make_user(app, email="grace@corp.example", password=PASSWORD, display_name="Grace")
        make_user(app, email="eve@elsewhere.example", password=PASSWORD, display_name="Eve")
        client, secret = apps.create_app(
            db.session.get(User, owner.id),
            {
                "name": "MARS (single sign-on)",
                "client_type": "confidential",
                "redirect_uris": [f"{SP_BASE}/sso/corp/callback"],
                "scopes": ["openid", "email", "profile"],
                "grant_types": ["authorization_code"],
            },
        )
        client_id = client.client_id
    server = make_server("127.0.0.1", int(url.rsplit(":", 1)[1]), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield OpenIDProvider(app, url, client_id, secret)
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="session")
def saml_idp_metadata(tmp_path_factory):
    """The SAML identity provider's metadata (its key and certificate stay in the folder)."""
    folder = tmp_path_factory.mktemp("saml-idp")
    config = IdPConfig()
    config.load(_idp_config(folder, []))
    return folder, create_metadata_string(None, config=config, valid=None).decode()


@pytest.fixture(scope="session")
def saml_sp_metadata():
    """Filled by ``saml_idp`` once MARS under test has served its metadata."""
    return {}


@pytest.fixture
def app_config(openid_provider, saml_idp_metadata):
    return {"PLUGINS": {"sso": provider_settings(openid_provider, saml_idp_metadata)}}


@pytest.fixture
def saml_idp(app, saml_idp_metadata):
    """The SAML identity provider, knowing MARS under test from its metadata."""
    folder, _ = saml_idp_metadata
    client = app.test_client()
    sp_metadata = [
        client.get(f"/sso/{name}/metadata").get_data(as_text=True)
        for name in ("corp-saml", "corp-saml-unasked")
    ]
    return SamlIdentityProvider(folder, _idp_config(folder, sp_metadata))


@pytest.fixture
def website(app):
    """The website, a first-party app of MARS under test; returns its client_id."""
    result = app.test_cli_runner().invoke(
        args=[
            "apps", "create", "--first-party", "--name", "Website",
            "--redirect-uri", WEBSITE_CALLBACK, "--scope", "account:read",
            "--scope", "openid",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output.split()[-1]
