"""``/examples/website/``: the example website (``examples/website/`` of a MARS checkout),
served in development only, with the ``config.json`` it reads: the address of MARS and the
client_id of a first-party app, "Example website", declared for it on first use.

Anywhere but development (or without a checkout's ``examples/`` folder) these are 404s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, jsonify, request, send_from_directory

from mars_server import public_url
from mars_server.auth import apps
from mars_server.auth.models import OAuthClient
from mars_server.db import db
from mars_server.state import mars_state

if TYPE_CHECKING:
    from werkzeug import Response

blueprint = Blueprint("example_site", __name__)

#: the checkout's example, beside the mars_server package of an editable install
FOLDER = Path(__file__).resolve().parents[2] / "examples" / "website"
NAME = "Example website"
PATH = "/examples/website/"
#: what the example asks for: who signed in (openid: its ID token is the sign-out's hint),
#: reading the account and the projects, if those scopes exist
WANTED_SCOPES = ("openid", "account:read", "projects:read")


def _served() -> bool:
    return current_app.config["MARS"]["ENV"] == "development" and FOLDER.is_dir()


def _development_only() -> None:
    if not _served():
        abort(404)


def example_app(address: str) -> OAuthClient:
    """The example's first-party app, declared on first use; ``address`` (the example's own,
    as this browser reaches it) is added to its redirect URIs if new."""
    app = db.session.scalar(
        sa.select(OAuthClient).where(OAuthClient.first_party, OAuthClient.name == NAME)
    )
    if app is None:
        scopes = [s for s in WANTED_SCOPES if s in mars_state().scopes]
        return apps.create_first_party_app(NAME, [address], [address], scopes)
    if address not in app.redirect_uris:
        app.redirect_uris = [*app.redirect_uris, address]
        app.post_logout_redirect_uris = [*app.post_logout_redirect_uris, address]
        db.session.commit()
    return app


def website_url() -> str | None:
    """The example's address, where development's pages send people to sign in."""
    return public_url(PATH) if _served() else None


#: the hosts the example may be reached at: a name from the request (its Host header) is
#: taken only if it is loopback's own, never one DNS rebinding could bring in
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


@blueprint.route("/examples/website/config.json")
def config() -> Response:
    _development_only()
    if request.host.rpartition(":")[0] not in LOOPBACK and request.host not in LOOPBACK:
        abort(404)
    address = request.host_url.rstrip("/") + PATH
    if apps.redirect_uri_problem(address):
        abort(404)
    app = example_app(address)
    return jsonify(
        mars=request.host_url.rstrip("/"),
        client_id=app.client_id,
        redirect_uri=address,
        post_logout_redirect_uri=address,
        scope=app.scopes,
    )


@blueprint.route("/examples/website/", defaults={"name": "index.html"})
@blueprint.route("/examples/website/<path:name>")
def files(name: str) -> Response:
    _development_only()
    return send_from_directory(FOLDER, name)
