"""mars_sdk: the Python SDK of the MARS API.

::

    from mars_sdk import MarsClient

    client = MarsClient("https://mars.example", token="mars_pat_...")
    for project in client.projects.list():
        print(project.slug)

See the README for authentication, errors, pagination and webhooks.
"""

from mars_sdk._version import __version__
from mars_sdk.auth import Auth, ClientCredentials, RefreshTokenAuth, TokenAuth
from mars_sdk.client import MarsClient
from mars_sdk.errors import (
    AuthenticationError,
    BadRequest,
    Conflict,
    FieldError,
    GraphQLError,
    MarsConnectionError,
    MarsError,
    MarsTimeoutError,
    NotFound,
    OAuthError,
    OperationFailed,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
    ServerError,
    UnexpectedResponse,
    ValidationError,
)
from mars_sdk.oauth import AuthorizationCodeFlow, AuthorizationRequest, OAuthTokens
from mars_sdk.pagination import Page, PageIterator
from mars_sdk.types import UNSET, HasETag, Unset

__all__ = [
    "UNSET",
    "Auth",
    "AuthenticationError",
    "AuthorizationCodeFlow",
    "AuthorizationRequest",
    "BadRequest",
    "ClientCredentials",
    "Conflict",
    "FieldError",
    "GraphQLError",
    "HasETag",
    "MarsClient",
    "MarsConnectionError",
    "MarsError",
    "MarsTimeoutError",
    "NotFound",
    "OAuthError",
    "OAuthTokens",
    "OperationFailed",
    "Page",
    "PageIterator",
    "PermissionDenied",
    "PreconditionFailed",
    "RateLimited",
    "RefreshTokenAuth",
    "ServerError",
    "TokenAuth",
    "UnexpectedResponse",
    "Unset",
    "ValidationError",
    "__version__",
]
