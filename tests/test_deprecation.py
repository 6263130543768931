"""An operation marked deprecated, from the decorator to the Python warning an SDK user sees
(docs/http.md#versions-and-deprecation)."""

from __future__ import annotations

import email.utils
import warnings

import pytest

from mars_sdk import MarsClient
from mars_server.sdkgen.document import read_document
from mars_server.sdkgen.render import render
from tests import legacy_plugin


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


def test_a_deprecated_parameter_or_field_is_said_when_used(app):
    client = app.test_client()
    plain = client.get("/api/v1/legacy/gadgets?name=sprocket")
    assert plain.status_code == 200 and "Deprecation" not in plain.headers
    used = client.get("/api/v1/legacy/gadgets?colour=red")
    assert used.status_code == 200 and used.json == [{"name": "sprocket"}]
    assert used.headers["Deprecation"] == "@1767225600"
    assert email.utils.parsedate_to_datetime(used.headers["Sunset"]).year == 2027
    assert "migrate/colour" in used.headers["Link"]
    made = client.post("/api/v1/legacy/gadgets", json={"name": "cog", "label": "Cog"})
    assert made.status_code == 201 and made.headers["Deprecation"] == "@1767225600"
    assert "Sunset" not in made.headers  # no sunset date was given for it
    assert "Deprecation" not in client.post("/api/v1/legacy/gadgets", json={"name": "c"}).headers
    document = client.get("/api/v1/openapi.json").json
    [colour] = [
        p
        for p in document["paths"]["/api/v1/legacy/gadgets"]["get"]["parameters"]
        if isinstance(p, dict) and p.get("name") == "colour"
    ]
    assert colour["deprecated"] is True and "Deprecated since 2026-01-01" in colour["description"]
    label = document["components"]["schemas"]["Gadget"]["properties"]["label"]
    assert label["deprecated"] is True and label["x-mars-deprecated-since"] == "2026-01-01"


def test_the_sdk_warns_whoever_sends_a_deprecated_parameter(app, live_server):
    with (
        MarsClient(live_server) as client,
        pytest.warns(DeprecationWarning, match="deprecated since 2026-01-01") as caught,
    ):
        client.request("GET", "/api/v1/legacy/gadgets", params={"colour": "red"})
    assert caught[0].filename == __file__


def test_version_2_of_an_operation_beside_version_1(app):
    """A plugin that must break an operation serves the new one under /api/v2 (Blueprint(...,
    api_version=2)) and deprecates the old one, which keeps working until its sunset."""
    client = app.test_client()
    old = client.get("/api/v1/legacy/things")
    new = client.get("/api/v2/legacy/things?prefix=g")
    assert old.json == [{"name": "gear"}] and old.headers["Deprecation"]
    assert new.status_code == 200 and new.json == {"items": [{"name": "gear"}], "next_cursor": None}
    assert "Deprecation" not in new.headers
    # The same conventions as /api/v1: problems, rate limits, request ids.
    refused = client.get("/api/v2/legacy/things?unknown=1")
    assert refused.status_code == 422 and refused.mimetype == "application/problem+json"
    assert new.headers["RateLimit-Policy"] and new.headers["X-Request-ID"]
    assert client.get("/api/v2/nothing").mimetype == "application/problem+json"
    # Idempotency-Key too: a retried POST is answered again, never made twice.
    legacy_plugin.MADE.clear()
    key = {"Idempotency-Key": "make-gear-1"}
    first = client.post("/api/v2/legacy/things", json={"name": "gear"}, headers=key)
    again = client.post("/api/v2/legacy/things", json={"name": "gear"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and legacy_plugin.MADE == ["gear"]
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert {"/api/v1/legacy/things", "/api/v2/legacy/things"} <= set(paths)
    files = render(read_document(client.get("/api/v1/openapi.json").json))
    v2 = next(text for name, text in files.items() if name.endswith("resources/legacy_v2.py"))
    assert "def list_things(" in v2 and "/api/v2/legacy/things" in v2
