"""An operation marked deprecated, from the decorator to the Python warning an SDK user sees
(docs/http.md#versions-and-deprecation)."""

from __future__ import annotations

import email.utils
import warnings

import pytest

from mars_sdk import MarsClient
from mars_server.sdkgen.document import read_document
from mars_server.sdkgen.render import render


@pytest.fixture
def app(make_app, install_plugins):
    install_plugins(legacy="Legacy")
    return make_app()


def test_the_answer_says_it_is_deprecated_when_it_goes_and_where_to_read(app):
    response = app.test_client().get("/api/v1/legacy/things")
    assert response.status_code == 200 and response.json == [{"name": "gear"}]
    assert response.headers["Deprecation"] == "@1767225600"  # 2026-01-01T00:00:00Z
    sunset = email.utils.parsedate_to_datetime(response.headers["Sunset"])
    assert sunset.isoformat() == "2027-06-30T00:00:00+00:00"
    assert response.headers["Link"] == (
        '<https://docs.example.org/migrate/things>; rel="deprecation"; type="text/html"'
    )
    # Errors too: a client that only sees a 4xx still learns the operation is going.
    refused = app.test_client().get("/api/v1/legacy/things?unknown=1")
    assert refused.status_code == 422 and refused.headers["Deprecation"] == "@1767225600"


def test_the_document_marks_it_deprecated(app):
    operation = (
        app.test_client().get("/api/v1/openapi.json").json["paths"]["/api/v1/legacy/things"]["get"]
    )
    assert operation["deprecated"] is True
    assert operation["x-mars-sunset"] == "2027-06-30"
    assert operation["summary"] == "List the old things"
    assert "Deprecated since 2026-01-01; removed on 2027-06-30" in operation["description"]


def test_the_sdk_warns_its_caller(app, live_server):
    with (
        MarsClient(live_server) as client,
        pytest.warns(DeprecationWarning, match="GET /api/v1/legacy/things") as caught,
    ):
        client.request("GET", "/api/v1/legacy/things")
    (warning,) = caught
    assert str(warning.message) == (
        "MARS operation GET /api/v1/legacy/things is deprecated since 2026-01-01; "
        "it will be removed on 2027-06-30 (Sunset)"
    )
    assert warning.filename == __file__  # pointed at the caller's line, not the SDK's


def test_a_generated_sdk_says_so_in_its_docstring(app):
    spec = app.test_client().get("/api/v1/openapi.json").json
    files = render(read_document(spec))
    legacy = next(text for name, text in files.items() if name.endswith("resources/legacy.py"))
    assert "def list_things(" in legacy and ".. deprecated::" in legacy
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing else of the app is deprecated
        app.test_client().get("/api/v1/meta")
