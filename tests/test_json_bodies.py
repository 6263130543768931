"""Bodies that are not JSON MARS can keep are a 400 problem before any view (issue 9).

Python's ``json`` decodes a lone surrogate escape into a str that UTF-8, PostgreSQL and
hashlib refuse, lets the last of two equal keys win, takes ``NaN``, and raises a bare
``ValueError`` past 4,300 digits. MARS refuses each where bodies are parsed, once, for every
endpoint: anonymous or not, core or plugin, with or without ``Idempotency-Key``.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import request

from mars_server.testing import signed_in_client

PROBLEM = "application/problem+json"
MALFORMED = "urn:mars:problem:malformed-json"

#: name: (path, a valid body with VALUE where the defect goes, sent with a token)
ENDPOINTS = {
    "register": (
        "/api/v1/accounts",
        '{"email": "new@example.test", "password": "long enough pass phrase", '
        '"display_name": VALUE}',
        False,
    ),
    "verify_email": ("/api/v1/accounts/verify", '{"token": VALUE}', False),
    "create_project": ("/api/v1/projects", '{"slug": "fine", "name": VALUE}', True),
    "create_webhook": (
        "/api/v1/webhooks",
        '{"url": "https://93.184.215.14/hook", "events": ["project.created"], '
        '"description": VALUE}',
        True,
    ),
    "create_my_token": ("/api/v1/me/tokens", '{"name": VALUE, "scopes": ["account:read"]}', True),
}

#: name: (JSON text put in place of VALUE, what the problem's detail must say)
DEFECTS = {
    "lone surrogate": ('"caf\\ud800e"', "lone UTF-16 surrogate"),
    "nested lone surrogate": ('"x", "extra": [{"deep": ["ok", "\\uDFFF"]}]', "/extra/0/deep/1"),
    "lone surrogate in a key": ('"x", "\\ud83d": "y"', "/\\ud83d"),
    "huge integer": ("1" * 4301, "more than 4300 digits"),
    "nested huge integer": ('"x", "extra": {"n": [-' + "9" * 5000 + "]}", "4300 digits"),
    "duplicate key": ('"x", "again": 1, "again": 2', 'key "again" twice'),
}


def row_counts(db) -> dict[str, int]:
    """Rows in every table (core and plugins): what a refused request must leave as it was."""
    db.session.remove()
    return {
        table.name: db.session.scalar(sa.select(sa.func.count()).select_from(table))
        for table in db.metadata.sorted_tables
    }


def assert_malformed(response, *words: str) -> dict:
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["type"] == MALFORMED
    assert body["title"] == "The request body is not valid JSON."
    for word in words:
        assert word in body["detail"]
    return body


@pytest.mark.parametrize("defect", DEFECTS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_bodies_no_field_can_hold_are_400_and_store_nothing(app, client, db, endpoint, defect):
    path, template, needs_token = ENDPOINTS[endpoint]
    value, says = DEFECTS[defect]
    sender = signed_in_client(app) if needs_token else client
    before = row_counts(db)
    response = sender.post(
        path,
        data=template.replace("VALUE", value),
        content_type="application/json",
        headers={"Idempotency-Key": f"{endpoint}-{defect}"},
    )
    assert_malformed(response, says)
    assert row_counts(db) == before  # no account, project, token, key claimed, event, audit row


def test_the_detail_points_at_each_string_with_a_lone_surrogate(app, db):
    body = '{"slug": "fine", "name": "\\udc00", "description": "ok \\ud800"}'
    response = signed_in_client(app).post(
        "/api/v1/projects", data=body, content_type="application/json"
    )
    detail = assert_malformed(response)["detail"]
    assert detail.endswith("at /description, /name.")


def test_a_surrogate_pair_is_one_character_and_welcome(app, db):
    response = signed_in_client(app).post(
        "/api/v1/projects",
        data='{"slug": "emoji", "name": "rocket \\ud83d\\ude80"}',
        content_type="application/json",
    )
    assert response.status_code == 201, response.json
    assert response.json["name"] == "rocket \N{ROCKET}"


def test_a_duplicate_key_never_picks_a_value(app, client, db):
    owner = signed_in_client(app)
    response = owner.post(
        "/api/v1/projects",
        data='{"slug": "secret", "name": "Secret", "visibility": "private", '
        '"visibility": "public"}',
        content_type="application/json",
    )
    assert_malformed(response, 'The JSON object has the key "visibility" twice.')
    assert owner.get("/api/v1/projects").json["items"] == []
    assert client.get("/api/v1/projects/secret").status_code == 404


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(app, db, constant):
    response = signed_in_client(app).post(
        "/api/v1/me/tokens",
        data=f'{{"name": "t", "scopes": ["account:read"], "expires_in_days": {constant}}}',
        content_type="application/json",
    )
    assert_malformed(response, f"{constant.lstrip('-')} is not a JSON value.")


def test_a_refused_body_does_not_use_up_its_idempotency_key(app, db):
    owner = signed_in_client(app)
    key = {"Idempotency-Key": "retry-me-later"}
    bad = owner.post(
        "/api/v1/projects",
        data='{"slug": "kept", "name": "\\ud800"}',
        content_type="application/json",
        headers=key,
    )
    assert_malformed(bad)
    good = owner.post("/api/v1/projects", json={"slug": "kept", "name": "Kept"}, headers=key)
    assert good.status_code == 201
    assert "Idempotent-Replayed" not in good.headers


def test_an_endpoint_reading_get_json_itself_gets_the_same_rules(make_app, db):
    """A view that skips webargs (a plugin's own route) is protected all the same."""
    app = make_app()

    @app.post("/api/v1/echo")
    def echo():
        return {"got": request.get_json()}

    client = app.test_client()
    assert client.post("/api/v1/echo", json={"a": 1}).json == {"got": {"a": 1}}
    assert_malformed(
        client.post("/api/v1/echo", data='{"a": 1, "a": 2}', content_type="application/json"),
        "twice",
    )


def test_a_body_that_is_not_utf8_is_400(app, client, db):
    response = client.post(
        "/api/v1/accounts",
        data='{"email": "x@example.test", "password": "long enough pass phrase"}'.encode("utf-16"),
        content_type="application/json",
    )
    assert_malformed(response, "UTF-8")


@pytest.mark.parametrize("limit", ["+5", " 5", "5 ", "\N{ARABIC-INDIC DIGIT FIVE}", "1_0"])
def test_limit_is_ascii_digits_only(client, db, limit):
    response = client.get("/api/v1/projects", query_string={"limit": limit})
    assert response.status_code == 422, response.json
    assert response.json["errors"] == [
        {"location": "query", "pointer": "/limit", "detail": "Not a valid integer."}
    ]
    assert client.get("/api/v1/projects?limit=5").status_code == 200


@pytest.mark.parametrize("days", [3.5, 30.0, "30"])
def test_expires_in_days_is_a_json_integer(app, db, days):
    owner = signed_in_client(app)
    before = row_counts(db)
    response = owner.post(
        "/api/v1/me/tokens", json={"name": "t", "scopes": ["account:read"], "expires_in_days": days}
    )
    assert response.status_code == 422, response.json
    error = {"location": "json", "pointer": "/expires_in_days", "detail": "Not a valid integer."}
    assert error in response.json["errors"]
    assert row_counts(db) == before
    fine = owner.post(
        "/api/v1/me/tokens", json={"name": "t", "scopes": ["account:read"], "expires_in_days": 30}
    )
    assert fine.status_code == 201


@pytest.mark.parametrize("value", [0, 1, "true", "yes", None])
def test_booleans_are_json_booleans(client, db, value):
    """The schemathesis run with a token found ``"disabled": 0`` accepted as false."""
    before = row_counts(db)
    hook = {"url": "https://hooks.example.com/in", "events": ["project.created"]}
    made = client.post("/api/v1/webhooks", json=hook | {"disabled": value})
    assert made.status_code == 422, made.json
    assert made.json["errors"][0]["pointer"] == "/disabled"
    preference = client.put(
        "/api/v1/me/notification-preferences/project.created",
        json={"in_app": value, "email": False},
    )
    assert preference.status_code == 422, preference.json
    assert row_counts(db) == before
    assert client.post("/api/v1/webhooks", json=hook | {"disabled": True}).status_code == 201


@pytest.mark.parametrize("value", ["1", "0", "on", "True", "yes"])
def test_a_boolean_in_a_query_string_is_true_or_false(client, value):
    response = client.get("/api/v1/me/notifications", query_string={"unread": value})
    assert response.status_code == 422, response.json
    for fine in ("true", "false"):
        assert client.get(f"/api/v1/me/notifications?unread={fine}").status_code == 200


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/v1/projects?visibility=%ED%A0%80", 422),  # a surrogate, UTF-8 encoded
        ("/api/v1/projects?limit=%ED%A0%80", 422),
        ("/api/v1/projects?visibility=%FF", 422),
        ("/api/v1/projects/%ED%A0%80", 404),
        ("/api/v1/projects/%C0%AF", 404),  # an overlong "/"
    ],
)
def test_invalid_utf8_in_the_url_is_a_client_error(client, db, url, status):
    response = client.get(url)
    assert response.status_code == status
    assert response.mimetype == PROBLEM
