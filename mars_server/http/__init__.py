"""What every MARS endpoint shares: the public HTTP toolkit for plugins.

- :class:`Blueprint`, :func:`abort` (flask-smorest's), mounted under ``/api/v1``;
- problems: :class:`MarsError` and its subclasses become RFC 9457 responses;
- lists: :class:`PageArgsSchema`, :func:`page_schema`, :func:`paginate`;
- single resources: :func:`send_etag`, :func:`require_if_match`, :func:`etag_of`.
"""

from __future__ import annotations

from flask_smorest import abort

from mars_server.http.blueprint import Blueprint
from mars_server.http.conditional import etag_of, require_if_match, send_etag
from mars_server.http.pagination import Page, PageArgsSchema, page_schema, paginate, send_page
from mars_server.http.problems import (
    BadRequest,
    Conflict,
    MarsError,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    ServiceUnavailable,
)
from mars_server.http.security import (
    Actor,
    AuthenticationFailed,
    AuthenticationRequired,
    Forbidden,
    InsufficientScope,
    authorize,
    current_actor,
    user_info,
)
from mars_server.http.spec import API_PREFIX

__all__ = [
    "API_PREFIX",
    "Actor",
    "AuthenticationFailed",
    "AuthenticationRequired",
    "BadRequest",
    "Blueprint",
    "Conflict",
    "Forbidden",
    "InsufficientScope",
    "MarsError",
    "NotFound",
    "Page",
    "PageArgsSchema",
    "PreconditionFailed",
    "PreconditionRequired",
    "ServiceUnavailable",
    "abort",
    "authorize",
    "current_actor",
    "etag_of",
    "page_schema",
    "paginate",
    "require_if_match",
    "send_etag",
    "send_page",
    "user_info",
]
