"""Property-based tests of every documented operation, in process (schemathesis).

The schema is read once from an app built only for that; each generated test then sends
its requests to the test's own ``app`` (on SQLite, then on PostgreSQL) through a proxy.
"""

from __future__ import annotations

import os
import tempfile
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from mars_server import create_app
from mars_server.testing import settings_for_tests


class CurrentApp:
    """A WSGI app that forwards to whichever app the running test uses."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


proxy = CurrentApp(create_app(settings_for_tests("sqlite://", tempfile.mkdtemp())))
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", proxy)


@pytest.fixture(autouse=True)
def _route_to_the_test_app(app):
    spec_app, proxy.app = proxy.app, app
    yield
    proxy.app = spec_app


#: Operations whose valid-looking input can still be refused for reasons no schema states:
#: a single-use link token, the common-password list, the server's token lifetime limit, an
#: app's redirect URIs (https or loopback, no fragment or user) and declared scopes.
SEMANTIC_CHECKS = {
    "register",
    "verify_email",
    "reset_password",
    "create_my_token",
    "create_app",
    "update_app",
}


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("MARS_FUZZ_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_every_operation_behaves_as_documented(case):
    # A cursor is a server-signed token that no generator can forge (bad ones are 400, see
    # test_pagination); a reused Idempotency-Key with another body is rightly 422 (see
    # test_idempotency). Everything else is sent as generated.
    if case.query:
        case.query.pop("cursor", None)
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    excluded = []
    if case.operation.definition.raw.get("operationId") in SEMANTIC_CHECKS:
        excluded.append(positive_data_acceptance)
    case.call_and_validate(excluded_checks=excluded)
