"""Cache-Control per operation, and the OpenAPI document and docs page served from memory
with an ETag."""

from __future__ import annotations

import flask
import marshmallow as ma
import pytest
from flask import Response

from mars_server.auth.schemas import MeSchema, NewTokenSchema
from mars_server.http import SECRET, caching, headers
from mars_server.http.security import Actor
from mars_server.http.spec import DOCUMENT_MAX_AGE

API = "/api/v1"
PUBLIC_DOCUMENT = f"public, max-age={DOCUMENT_MAX_AGE}"


def the_api(app):
    return app.extensions["flask-smorest"]["blp_name_to_api"]["projects"]


@pytest.mark.parametrize("path", [f"{API}/openapi.json", "/api/docs"])
def test_documents_are_built_once_and_revalidated_with_their_etag(app, client, path, monkeypatch):
    spec = the_api(app).spec
    calls = []
    real = spec.to_dict
    monkeypatch.setattr(spec, "to_dict", lambda: calls.append(1) or real())
    anonymous = app.test_client()
    first = anonymous.get(path)
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == PUBLIC_DOCUMENT
    etag = first.headers["ETag"]
    built = len(calls)
    again = anonymous.get(path)
    assert again.data == first.data
    assert again.headers["ETag"] == etag
    # The same for everyone: a request with a token gets the same, cacheable, answer.
    signed_in = client.get(path)
    assert signed_in.headers["Cache-Control"] == PUBLIC_DOCUMENT
    assert signed_in.headers["ETag"] == etag
    not_modified = anonymous.get(path, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.data == b""
    assert len(calls) == built  # not built again


def test_the_document_is_the_one_flask_smorest_builds(app):
    served = app.test_client().get(f"{API}/openapi.json")
    assert served.mimetype == "application/json"
    assert served.json == the_api(app).spec.to_dict()


def test_the_docs_page_keeps_its_framing_policy(app):
    page = app.test_client().get("/api/docs")
    assert page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert f"{API}/openapi.json" in page.text


def test_public_lists_are_public_briefly_for_anonymous_callers_only(app, client):
    anonymous = app.test_client().get(f"{API}/projects")
    assert anonymous.status_code == 200
    assert anonymous.headers["Cache-Control"] == "public, max-age=30"
    assert "Authorization" in anonymous.headers["Vary"]
    signed_in = client.get(f"{API}/projects")
    assert signed_in.status_code == 200
    assert signed_in.headers["Cache-Control"] == "private, no-store"


def test_other_anonymous_reads_are_revalidated(app):
    meta = app.test_client().get(f"{API}/meta")
    assert meta.status_code == 200
    assert meta.headers["Cache-Control"] == "no-cache"


def test_personal_reads_are_private_and_revalidated_with_their_etag(client):
    me = client.get(f"{API}/me")
    assert me.headers["Cache-Control"] == "private, no-store"
    again = client.get(f"{API}/me", headers={"If-None-Match": me.headers["ETag"]})
    assert again.status_code == 304


def test_secrets_writes_errors_and_the_oauth_pages_are_never_stored(app, client):
    created = client.post(f"{API}/me/tokens", json={"name": "ci", "scopes": ["account:read"]})
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    missing = client.get(f"{API}/projects/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["Cache-Control"] == "no-store"
    page = app.test_client().get("/oauth/authorize")
    assert page.headers["Cache-Control"] == "no-store"


def test_schemas_carrying_a_secret_are_found():
    class Holder(ma.Schema):
        items = ma.fields.List(ma.fields.Nested(NewTokenSchema))

    class Plain(ma.Schema):
        name = ma.fields.String()
        hidden = ma.fields.String(metadata={SECRET: False})

    assert caching.carries_secret(NewTokenSchema)
    assert caching.carries_secret(Holder())
    assert not caching.carries_secret(MeSchema)
    assert not caching.carries_secret(Plain)


@pytest.mark.parametrize(
    ("policy", "method", "authorization", "expected"),
    [
        (caching.CachePolicy(no_store=True), "GET", None, "no-store"),
        (caching.CachePolicy(no_store=True), "GET", "Bearer x", "no-store"),
        (caching.CachePolicy(public_max_age=10), "GET", None, "public, max-age=10"),
        (caching.CachePolicy(public_max_age=10), "GET", "Bearer x", "private, no-store"),
        (caching.CachePolicy(public_max_age=10), "POST", None, "no-store"),
        (None, "GET", None, "no-cache"),
        (None, "GET", "Bearer x", "private, no-store"),
        (None, "DELETE", None, "no-store"),
    ],
)
def test_an_operations_policy(app, policy, method, authorization, expected):
    with app.test_request_context(
        f"{API}/things",
        method=method,
        headers={"Authorization": authorization} if authorization else {},
    ):
        if policy is not None:
            caching.declare(policy)
        assert headers.cache_control(Response()) == expected


@pytest.mark.parametrize("policy", [None, caching.CachePolicy(public_max_age=10)])
def test_a_caller_found_without_an_authorization_header_is_credentialed(app, policy):
    """A plugin's mars_actor_from_request may know the caller by a cookie: their answer is
    theirs alone, even on an operation whose anonymous answers are public."""
    with app.test_request_context(f"{API}/things", headers={"Cookie": "session=abc"}):
        if policy is not None:
            caching.declare(policy)
        flask.g.mars_actor = Actor(kind="user", id="usr_1", scopes=frozenset())
        assert headers.cache_control(Response()) == "private, no-store"


@pytest.mark.parametrize(
    "kwargs", [{"public_max_age": -1}, {"public_max_age": 86400}, {"everyone": True}]
)
def test_policies_are_checked(kwargs):
    with pytest.raises(ValueError, match="public_max_age"):
        caching.CachePolicy(**kwargs)
