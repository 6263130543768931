"""Property-based tests of every documented operation, in process (schemathesis).

The schema is read once from an app built only for that; each generated test then sends
its requests to the test's own ``app`` (on SQLite, then on PostgreSQL) through a proxy.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from mars_server import create_app
from mars_server.testing import settings_for_tests

#: About 75 s of the suite: started first under pytest-xdist (tests/conftest.py).
pytestmark = pytest.mark.slow(75)


class CurrentApp:
    """A WSGI app that forwards to whichever app the running test uses."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


proxy = CurrentApp(create_app(settings_for_tests("sqlite://", tempfile.mkdtemp())))
#: the settings fuzz/run_fuzz.py uses too (428 answers a missing If-Match)
CONFIG = SchemathesisConfig.from_path(Path(__file__).parents[1] / "fuzz" / "schemathesis.toml")
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", proxy, config=CONFIG)


@pytest.fixture(autouse=True)
def _route_to_the_test_app(app):
    spec_app, proxy.app = proxy.app, app
    yield
    proxy.app = spec_app


#: Operations whose valid-looking input can still be refused for reasons no schema states:
#: a single-use link token, the common-password list, the server's token lifetime limit, an
#: app's redirect URIs (https or loopback, no fragment or user) and declared scopes, the
#: caller's current password, a webhook's declared event types and deliverable URL, and an
#: audit query's time range (`until` after `since`).
SEMANTIC_CHECKS = {
    "register",
    "verify_email",
    "reset_password",
    "create_my_token",
    "create_app",
    "update_app",
    "change_my_password",
    "create_webhook",
    "update_webhook",
    "list_audit_records",
    # an identity provider the settings name (plugins/sso)
    "start_sso_link",
}


def _needs_current_etag(operation) -> bool:
    """An ``If-Match`` no generator can know: a valid-looking one is rightly 412 (or 428)."""
    return any(
        parameter.get("name") == "If-Match" or parameter.get("$ref", "").endswith("/IF_MATCH")
        for parameter in operation.definition.raw.get("parameters", [])
    )


#: what every generated test here shares: requests are slow, fixtures are per test
HYPOTHESIS = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
}


@pytest.fixture(params=["anonymous", "member", "admin"])
def caller(request, app, create_user, token_for):
    """Who sends the generated requests: no one, or a member or an admin whose token holds
    every declared scope (so the operations behind ``requires`` are reached too)."""
    if request.param == "anonymous":
        return {}
    roles = ("member", "admin") if request.param == "admin" else ("member",)
    return {"Authorization": f"Bearer {token_for(create_user(roles=roles))}"}


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("MARS_FUZZ_EXAMPLES", "20")),
    **HYPOTHESIS,
)
def test_every_operation_behaves_as_documented(case, caller):
    # A cursor is a server-signed token that no generator can forge (bad ones are 400, see
    # test_pagination); a reused Idempotency-Key with another body is rightly 422 (see
    # test_idempotency). Everything else is sent as generated.
    if case.query:
        case.query.pop("cursor", None)
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    excluded = []
    if case.operation.definition.raw.get("operationId") in SEMANTIC_CHECKS or _needs_current_etag(
        case.operation
    ):
        excluded.append(positive_data_acceptance)
    # Sent as the caller's explicit credentials: schemathesis then also checks that the
    # operation refuses the same request without them, or with invalid ones (ignored_auth).
    case.call_and_validate(headers=caller, excluded_checks=excluded)


#: What no JSON field can hold (issue 9), put in place of a generated body's first value:
#: a lone surrogate escape, and an integer longer than Python reads.
MALFORMED_VALUES = {"lone surrogate": '"\\ud800"', "huge integer": "1" * 4301}
_SLOT = "<<malformed value>>"


def _takes_json(ctx) -> bool:
    content = ctx.operation.definition.raw.get("requestBody", {}).get("content", {})
    return "application/json" in content


def _first_value_replaced(body):
    """``body`` with its first value, depth first, replaced by :data:`_SLOT`."""
    if isinstance(body, dict):
        key = next(iter(body), None)
        return {**body, key: _first_value_replaced(body[key])} if key else {"x": _SLOT}
    if isinstance(body, list):
        return [_first_value_replaced(body[0]), *body[1:]] if body else [_SLOT]
    return _SLOT


@schema.include(_takes_json).parametrize()
@settings(
    max_examples=int(os.environ.get("MARS_FUZZ_EXAMPLES_MALFORMED", "5")),
    **HYPOTHESIS,
)
def test_every_json_body_refuses_what_no_field_can_hold(case):
    # Refused where the body is parsed: before authentication, validation, the view, or the
    # Idempotency-Key claim, so whatever else was generated, the answer is this 400.
    if case.method.upper() != case.operation.method.upper():
        return  # schemathesis also tries methods the path does not allow: 405, body unread
    body = {} if isinstance(case.body, NotSet) else case.body
    text = json.dumps(_first_value_replaced(body))
    case.media_type = "application/json"  # what else is sent (a 415) is another test
    case.headers = {
        name: value
        for name, value in (case.headers or {}).items()
        if name.lower() != "content-type"
    }
    for name, value in MALFORMED_VALUES.items():
        case.body = text.replace(json.dumps(_SLOT), value).encode()
        response = case.call()
        assert response.status_code == 400, (name, response.text)
        assert response.json()["type"] == "urn:mars:problem:malformed-json", name
        case.validate_response(
            response,
            checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
        )
