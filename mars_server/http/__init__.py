"""What every MARS endpoint shares: the public HTTP toolkit for plugins.

- :class:`Blueprint`, :func:`abort` (flask-smorest's), mounted under ``/api/v1``;
- problems: :class:`MarsError` and its subclasses become RFC 9457 responses;
- lists: :class:`PageArgsSchema`, :func:`page_schema`, :func:`paginate` with :class:`Sort`,
  the shared parameters :func:`sort_param`, :func:`fields_param` and :func:`search_param`,
  and :class:`DigitsInteger` for integers in a query string;
- strict fields: :class:`StrictBoolean` (bodies), :class:`QueryBoolean` (query strings);
- single resources: :func:`send_etag`, :func:`require_if_match`, :func:`etag_of`.
"""

from __future__ import annotations

from flask_smorest import abort

from mars_server.http.blueprint import Blueprint, deprecated_field
from mars_server.http.conditional import etag_of, require_if_match, send_etag
from mars_server.http.fields import DigitsInteger, QueryBoolean, StrictBoolean
from mars_server.http.pagination import (
    Page,
    PageArgsSchema,
    Sort,
    fields_param,
    first_pages,
    page_schema,
    paginate,
    search_param,
    send_page,
    sort_param,
)
from mars_server.http.problems import (
    BadRequest,
    Conflict,
    MarsError,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    ServiceUnavailable,
    ValidationFailed,
)
from mars_server.http.security import (
    SECRET,
    Actor,
    AuthenticationFailed,
    AuthenticationRequired,
    Forbidden,
    InsufficientScope,
    authorize,
    authorize_issuance,
    check_issuance,
    confirm_password,
    current_actor,
    external_sign_in,
    user_info,
)
from mars_server.http.spec import API_PREFIX

__all__ = [
    "API_PREFIX",
    "SECRET",
    "Actor",
    "AuthenticationFailed",
    "AuthenticationRequired",
    "BadRequest",
    "Blueprint",
    "Conflict",
    "DigitsInteger",
    "Forbidden",
    "InsufficientScope",
    "MarsError",
    "NotFound",
    "Page",
    "PageArgsSchema",
    "PreconditionFailed",
    "PreconditionRequired",
    "QueryBoolean",
    "ServiceUnavailable",
    "Sort",
    "StrictBoolean",
    "ValidationFailed",
    "abort",
    "authorize",
    "authorize_issuance",
    "check_issuance",
    "confirm_password",
    "current_actor",
    "deprecated_field",
    "etag_of",
    "external_sign_in",
    "fields_param",
    "first_pages",
    "page_schema",
    "paginate",
    "require_if_match",
    "search_param",
    "send_etag",
    "send_page",
    "sort_param",
    "user_info",
]
