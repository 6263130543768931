"""Security headers on every operation, caching of what carries secrets or personal data,
HSTS, the docs page, and CORS answers that caches keep apart by Origin."""

from __future__ import annotations

import re

import pytest

API = "/api/v1"


def operations(spec):
    for path, item in spec["paths"].items():
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item:
                yield path, method, item[method]


def concrete(path):
    """A URL for a templated path: ids no object has (the answer is then mostly 404)."""
    return re.sub(r"\{[^}]+\}", "nothing-here", path)


def test_every_operation_sends_nosniff_and_no_store_when_credentialed(app, client):
    spec = app.test_client().get(f"{API}/openapi.json").json
    anonymous = app.test_client()
    seen = reads = 0
    for path, method, _operation in operations(spec):
        url = concrete(path)  # the document's paths start with /api/v1
        signed_in = getattr(client, method)(url, json={} if method != "get" else None)
        assert signed_in.headers["X-Content-Type-Options"] == "nosniff", (method, path)
        if method == "get" and signed_in.status_code == 200:
            # Personal data: kept by the caller's own client only, and revalidated.
            assert signed_in.headers["Cache-Control"] == "private, no-store", (method, path)
            reads += 1
        else:
            assert signed_in.headers["Cache-Control"] == "no-store", (method, path)
        plain = getattr(anonymous, method)(url, json={} if method != "get" else None)
        assert plain.headers["X-Content-Type-Options"] == "nosniff", (method, path)
        if method != "get":
            assert plain.headers["Cache-Control"] == "no-store", (method, path)
        seen += 1
    assert seen >= 40
    assert reads >= 5


def test_secrets_in_responses_are_declared_and_never_cached(app, client):
    spec = app.test_client().get(f"{API}/openapi.json").json
    schemas = spec["components"]["schemas"]
    declared = {
        (name, field)
        for name, schema in schemas.items()
        for field, prop in schema.get("properties", {}).items()
        if prop.get("x-mars-secret")
    }
    assert {
        ("NewToken", "token"),
        ("NewApp", "client_secret"),
        ("NewSecret", "secret"),
    } <= declared
    # A read-only string named like a secret is declared as one.
    for name, schema in schemas.items():
        for field, prop in schema.get("properties", {}).items():
            is_string = "string" in str(prop.get("type"))
            if (
                prop.get("readOnly")
                and is_string
                and re.search(r"(^|_)(token|secret|password)$", field)
            ):
                assert prop.get("x-mars-secret"), f"{name}.{field} is not marked x-mars-secret"

    created = client.post(f"{API}/me/tokens", json={"name": "ci", "scopes": ["account:read"]})
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    # Personal data without a secret: private, revalidated with its ETag.
    me = client.get(f"{API}/me")
    assert me.headers["Cache-Control"] == "private, no-store"
    assert client.get(f"{API}/me", headers={"If-None-Match": me.headers["ETag"]}).status_code == 304


def test_public_reads_stay_cacheable(app):
    anonymous = app.test_client()
    for url in (f"{API}/openapi.json", f"{API}/projects", f"{API}/meta"):
        response = anonymous.get(url)
        assert response.status_code == 200
        assert "no-store" not in response.headers.get("Cache-Control", ""), url


@pytest.mark.parametrize(
    ("public_url", "hsts"),
    [("https://mars.example.org", True), ("http://127.0.0.1:5000", False), (None, False)],
)
def test_hsts_when_reached_over_https(make_app, public_url, hsts):
    app = make_app(PUBLIC_URL=public_url)
    for url in (f"{API}/meta", "/healthz", f"{API}/nothing"):
        response = app.test_client().get(url)
        if hsts:
            assert response.headers["Strict-Transport-Security"] == "max-age=31536000", url
        else:
            assert "Strict-Transport-Security" not in response.headers, url


def test_the_docs_page_cannot_be_framed(app):
    for url in ("/api/docs", "/api/docs/assets/swagger-ui.css"):
        response = app.test_client().get(url)
        assert response.status_code == 200, url
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "origins", [["https://web.example"], ["https://web.example", "https://admin.example"]]
)
@pytest.mark.parametrize("path", [f"{API}/meta", f"{API}/projects", "/oauth/token"])
def test_cors_answers_vary_on_origin(make_app, origins, path):
    app = make_app(CORS_ORIGINS=origins)
    client = app.test_client()
    method = client.post if path == "/oauth/token" else client.get
    for origin in (None, "https://web.example", "https://evil.example"):
        headers = {"Origin": origin} if origin else {}
        for response in (
            method(path, headers=headers),
            client.options(path, headers=headers | {"Access-Control-Request-Method": "GET"}),
        ):
            assert "Origin" in response.vary, (origin, response.headers)
            allowed = response.headers.get("Access-Control-Allow-Origin")
            if origin == "https://web.example":
                assert allowed == origin
            else:  # no Origin, or a refused one: no CORS grant at all
                assert allowed is None, (origin, response.headers)
