"""What the auth plugin adds to the HTTP surface beyond its API: the credentials it accepts,
as OpenAPI security schemes, and the OAuth endpoints browser apps call from another origin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mars_server.auth.secrets import PAT_PREFIX
from mars_server.hookspecs import SecurityScheme

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The OAuth server's endpoints (``oauth_views.py``), outside ``/api/v1``.
AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"  # noqa: S105  (a path, not a secret)
REVOKE_PATH = "/oauth/revoke"
METADATA_PATH = "/.well-known/oauth-authorization-server"

#: What a browser app (the website: code + PKCE) calls cross-origin: the token and
#: revocation endpoints and the server's metadata. Never the sign-in and consent pages.
CORS_PATHS = (TOKEN_PATH, REVOKE_PATH, METADATA_PATH)


def security_schemes(scopes: Mapping[str, str]) -> list[SecurityScheme]:
    """``oauth2`` (the flows of MARS's OAuth server, offering every declared scope) and
    ``personalAccessToken``: the two kinds of token ``actor_from_request`` accepts."""
    offered = dict(scopes)
    return [
        SecurityScheme(
            "oauth2",
            {
                "type": "oauth2",
                "description": "OAuth 2: authorization code with PKCE (S256) for apps that sign "
                "users in, client credentials for servers.",
                "flows": {
                    "authorizationCode": {
                        "authorizationUrl": AUTHORIZE_PATH,
                        "tokenUrl": TOKEN_PATH,
                        "refreshUrl": TOKEN_PATH,
                        "scopes": offered,
                    },
                    "clientCredentials": {"tokenUrl": TOKEN_PATH, "scopes": offered},
                },
            },
        ),
        SecurityScheme(
            "personalAccessToken",
            {
                "type": "http",
                "scheme": "bearer",
                "description": f"A personal access token (`{PAT_PREFIX}...`) from "
                "/api/v1/me/tokens. A personal token needs the scopes the operation lists "
                "under `oauth2`: each token is given scopes when it is made, from the same "
                "list, and MARS checks them on every call.",
            },
        ),
    ]
