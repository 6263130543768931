"""Every failure is an RFC 9457 problem with a request id, and changes nothing."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from mars_server.testing import signed_in_client

PROBLEM = "application/problem+json"


def count_projects(db) -> int:
    return db.session.scalar(sa.text("SELECT count(*) FROM projects"))


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["status"] == status
    assert body["title"]
    assert body["type"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_malformed_json_is_400(client, db):
    response = client.post(
        "/api/v1/projects", data='{"slug": "a", "name":', content_type="application/json"
    )
    body = assert_problem(response, 400)
    assert "JSON" in body["detail"]
    assert count_projects(db) == 0


def test_unknown_route_is_404(client):
    body = assert_problem(client.get("/api/v1/no-such-thing"), 404)
    assert body["type"] == "about:blank"


def test_wrong_method_is_405_with_allow(client):
    response = client.put("/api/v1/projects", json={})
    assert_problem(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_body_too_large_is_413(make_app, db):
    app = make_app(MAX_CONTENT_LENGTH=2048)
    response = app.test_client().post(
        "/api/v1/projects", json={"slug": "big", "name": "x", "description": "y" * 4096}
    )
    assert_problem(response, 413)
    with app.app_context():
        assert count_projects(db) == 0


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_non_json_body_is_415(client, db, content_type):
    response = client.post("/api/v1/projects", data="slug=a&name=b", content_type=content_type)
    assert_problem(response, 415)
    assert count_projects(db) == 0


def test_validation_is_422_with_field_errors(client, db):
    response = client.post("/api/v1/projects", json={"slug": "Not A Slug", "owner": "me"})
    body = assert_problem(response, 422)
    pointers = {(e["location"], e["pointer"]) for e in body["errors"]}
    assert ("json", "/slug") in pointers
    assert ("json", "/name") in pointers  # required and missing
    assert ("json", "/owner") in pointers  # unknown fields are refused, never ignored
    assert all(e["detail"] for e in body["errors"])
    assert count_projects(db) == 0


def test_query_validation_is_422(client):
    body = assert_problem(client.get("/api/v1/projects?visibility=secret&limit=0"), 422)
    assert {e["pointer"] for e in body["errors"]} == {"/visibility", "/limit"}
    assert {e["location"] for e in body["errors"]} == {"query"}


def test_unexpected_error_is_500_without_internals(make_app, caplog):
    app = make_app()

    @app.get("/api/v1/explode")
    def explode():
        raise RuntimeError("SELECT password FROM users WHERE id = 1")

    response = app.test_client().get("/api/v1/explode")
    body = assert_problem(response, 500)
    text = response.get_data(as_text=True)
    assert "SELECT" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert "request_id" in body["detail"]
    assert any("RuntimeError" in (r.exc_text or "") for r in caplog.records)


def test_locked_sqlite_database_is_503(sqlite_app, tmp_path, project_body):
    app = sqlite_app(SQLITE_BUSY_TIMEOUT_MS=50)
    client = signed_in_client(app)
    blocker = sqlite3.connect(tmp_path / "own.db", timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        response = client.post("/api/v1/projects", json=project_body())
    finally:
        blocker.rollback()
        blocker.close()
    body = assert_problem(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert "busy" in body["detail"]
    assert client.get("/api/v1/projects").json["items"] == []


def test_integrity_conflict_is_409_problem(client, db, project_body):
    assert client.post("/api/v1/projects", json=project_body(slug="same")).status_code == 201
    body = assert_problem(client.post("/api/v1/projects", json=project_body(slug="same")), 409)
    assert body["errors"][0]["pointer"] == "/slug"
    assert count_projects(db) == 1


def test_problem_schema_is_documented_once(client):
    spec = client.get("/api/v1/openapi.json").json
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "request_id"}
    default = spec["components"]["responses"]["DEFAULT_ERROR"]
    assert list(default["content"]) == [PROBLEM]


def test_nul_characters_are_refused_everywhere(client, db):
    body = assert_problem(
        client.post("/api/v1/projects", json={"slug": "nul", "name": "a\x00b"}), 422
    )
    assert body["errors"] == [
        {"location": "json", "pointer": "/name", "detail": "Must not contain NUL characters."}
    ]
    assert_problem(client.get("/api/v1/projects?visibility=pub%00lic"), 422)
    assert_problem(client.get("/api/v1/projects/prj_%00"), 400)
    assert count_projects(db) == 0


def test_deeply_nested_json_is_400(client, db):
    body = "[" * 100_000 + "]" * 100_000
    response = client.post("/api/v1/projects", data=body, content_type="application/json")
    assert_problem(response, 400)
    assert count_projects(db) == 0


def test_failure_after_the_view_keeps_its_problem_shape(make_app, sqlite_app):
    app = make_app()

    @app.after_request
    def break_late(response):
        raise sqlite3.OperationalError("database is locked")

    import sqlalchemy.exc

    @app.after_request
    def break_later(response):
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("locked"))

    response = app.test_client().get("/api/v1/meta")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"


def test_database_errors_a_service_did_not_expect_are_problems(make_app):
    import sqlalchemy.exc

    app = make_app()

    @app.get("/api/v1/integrity")
    def integrity():
        raise sqlalchemy.exc.IntegrityError("INSERT secret", {}, Exception("UNIQUE failed"))

    @app.get("/api/v1/data")
    def data():
        raise sqlalchemy.exc.DataError("SELECT secret", {}, Exception("out of range"))

    client = app.test_client()
    conflict = assert_problem(client.get("/api/v1/integrity"), 409)
    bad = assert_problem(client.get("/api/v1/data"), 400)
    for body in (conflict, bad):
        assert "secret" not in str(body)


def test_a_service_refusal_of_fields_is_the_same_422_as_a_schemas(client, db, app):
    """ValidationFailed, raised by services (here: a member who is no user), answers like the
    schema's 422: same type, title and errors; a command reads it in one line."""
    project = client.post("/api/v1/projects", json={"slug": "fields", "name": "Fields"}).json
    refused = client.post(
        f"/api/v1/projects/{project['id']}/members",
        json={"user_id": "usr_nobody", "role": "member"},
    )
    body = assert_problem(refused, 422)
    schema_422 = assert_problem(client.post("/api/v1/projects", json={}), 422)
    assert (body["type"], body["title"]) == (schema_422["type"], schema_422["title"])
    assert body["errors"] == [
        {"detail": "No active user has this id.", "pointer": "/user_id", "location": "json"}
    ]

    from mars_server.http import ValidationFailed

    error = ValidationFailed({"limit": "Too big.", "cursor": ["Bad.", "Old."]}, location="query")
    assert error.message == "limit: Too big.; cursor: Bad. Old."
    assert [e["location"] for e in error.extra["errors"]] == ["query"] * 3
    result = app.test_cli_runner().invoke(
        args=["users", "create", "weak@example.test", "--password-stdin"], input="short\n"
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: password: ")
