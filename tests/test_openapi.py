"""The OpenAPI document: valid 3.1, and every operation as the SDK generator needs it."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def spec(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json


def operations(spec):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"] == "3.1.0"
    validate(spec)


def test_every_path_is_under_api_v1(spec):
    assert all(path == "/api/v1" or path.startswith("/api/v1/") for path in spec["paths"])


def test_the_apis_address_answers_with_an_index(client):
    index = client.get("/api/v1")
    assert index.status_code == 200
    links = index.json["links"]
    assert links["openapi"] == "/api/v1/openapi.json" and links["docs"] == "/api/docs"
    for name in ("openapi", "meta", "plugins", "health", "graphiql"):
        assert client.get(links[name]).status_code == 200, name
    graphql = client.get(links["graphql"], query_string={"query": "{ __typename }"})
    assert graphql.json == {"data": {"__typename": "Query"}}


def test_success_headers_are_declared_only_where_they_are_sent(spec):
    """A 204 has neither ETag nor Location; a 202 no ETag, and a Location only for a
    long-running operation (its answer, or an answer that leads to one); a 201 has a
    Location."""
    for path, method, op in operations(spec):
        for code, response in op["responses"].items():
            headers = set(response.get("headers", {}))
            if code == "204":
                assert not headers & {"ETag", "Location"}, (method, path)
            elif code == "202":
                assert "ETag" not in headers, (method, path)
                schema = response["content"]["application/json"]["schema"]
                long_running = schema.get("$ref", "").endswith("/LongRunningOperation")
                long_running |= bool(op.get("x-mars-long-running"))  # a redelivery's
                assert ("Location" in headers) == long_running, (method, path)
            elif code == "201":
                assert "Location" in headers, (method, path)


def test_created_apps_and_tokens_say_where_they_are(client, create_user, auth_headers):
    headers = auth_headers(
        create_user(), ["account:read", "account:write", "apps:write", "apps:read"]
    )
    token = client.post(
        "/api/v1/me/tokens", json={"name": "ci", "scopes": ["account:read"]}, headers=headers
    )
    assert token.status_code == 201
    assert token.headers["Location"] == f"/api/v1/me/tokens/{token.json['id']}"
    shown = client.get(token.headers["Location"], headers=headers)
    assert shown.status_code == 200 and "token" not in shown.json
    assert shown.json["hint"] == token.json["hint"]
    app = client.post(
        "/api/v1/apps",
        json={
            "name": "Rover",
            "client_type": "public",
            "redirect_uris": ["https://rover.example/cb"],
            "scopes": ["account:read"],
            "grant_types": ["authorization_code"],
        },
        headers=headers,
    )
    assert app.status_code == 201
    assert app.headers["Location"] == f"/api/v1/apps/{app.json['id']}"
    assert client.get(app.headers["Location"], headers=headers).status_code == 200


def test_anonymous_operations_say_they_need_no_credentials(spec):
    anonymous = {
        op["operationId"]: op["security"]
        for _, _, op in operations(spec)
        if not any(requirement for requirement in op["security"])
    }
    assert anonymous["get_meta"] == [] and anonymous["register"] == []
    assert all("security" in op for _, _, op in operations(spec))


def test_the_token_scheme_says_what_its_scopes_mean(spec):
    scheme = spec["components"]["securitySchemes"]["personalAccessToken"]
    assert scheme["scheme"] == "bearer" and "scopes the operation lists" in scheme["description"]


def test_webhook_events_have_a_tag_of_their_own(spec):
    tags = {tag for item in spec["webhooks"].values() for tag in item["post"]["tags"]}
    assert tags == {"webhook-events"}
    assert "webhook-events" in {tag["name"] for tag in spec["tags"]}
    assert spec["info"]["license"]["identifier"] == "Apache-2.0"


def test_every_operation_has_id_tag_summary_and_problem_responses(spec):
    ids = []
    for path, method, op in operations(spec):
        ids.append(op["operationId"])
        assert re.fullmatch(r"[a-z][a-z_]*", op["operationId"]), op["operationId"]
        assert op["tags"] and op["summary"], (method, path)
        responses = op["responses"]
        assert any(code.startswith("2") for code in responses), (method, path)
        assert "500" in responses and "default" in responses
        if "requestBody" in op:
            assert {"400", "413", "415", "422"} <= set(responses), (method, path)
        if method in ("patch", "delete") and op.get("x-mars-if-match", True):
            assert {"412", "428"} <= set(responses), (method, path)
        if method == "post":
            names = [p.get("$ref", "") for p in op.get("parameters", [])]
            assert "#/components/parameters/IDEMPOTENCY_KEY" in names
    assert len(ids) == len(set(ids))


def test_problem_responses_are_problem_json(spec):
    for name in ("UNPROCESSABLE_ENTITY", "NOT_FOUND", "DEFAULT_ERROR", "PRECONDITION_FAILED"):
        response = spec["components"]["responses"][name]
        assert list(response["content"]) == ["application/problem+json"]
        assert response["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }


def test_export_command_writes_the_served_document(runner, spec, tmp_path):
    target = tmp_path / "openapi.json"
    result = runner.invoke(args=["openapi", "export", "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text()) == spec


def test_docs_page_uses_only_local_assets(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/api/docs/assets/") for a in assets), assets
    assert "https://" not in html and "http://" not in html
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.data) > 1000


def test_each_operation_documents_the_scopes_it_needs(spec):
    """The one decorator that checks a view's scopes also documents them, per operation, for
    both token kinds; every scope an operation names is a declared one."""
    declared = spec["components"]["securitySchemes"]["oauth2"]["flows"]["authorizationCode"]
    assert {"projects:read", "projects:write", "account:read"} <= set(declared["scopes"])
    projects = spec["paths"]["/api/v1/projects"]
    assert projects["post"]["security"] == [
        {"oauth2": ["projects:write"]},
        {"personalAccessToken": []},
    ]
    assert {} in projects["get"]["security"]  # anonymous callers see public projects
    assert {"oauth2": ["projects:read"]} in projects["get"]["security"]
    assert "401" in projects["post"]["responses"] and "403" in projects["post"]["responses"]
    for path, method, operation in operations(spec):
        for requirement in operation.get("security", []):
            for scopes in requirement.values():
                assert set(scopes) <= set(declared["scopes"]), (method, path)


def test_requests_and_answers_have_schemas_of_their_own(spec):
    """A schema that is both sent and answered is published twice: ``<Name>Input`` for the
    request, without read-only properties, and ``<Name>`` for the answer, which requires every
    read-only property (MARS always sends them) and offers no write-only one."""
    schemas = spec["components"]["schemas"]
    bodies = {
        operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        for _path, _method, operation in operations(spec)
        if "requestBody" in operation
    }
    assert {"ProjectInput", "WebhookInput", "AppInput", "MemberInput", "NewTokenInput"} <= bodies
    assert not {"Project", "Webhook", "App", "Member", "NewToken"} & bodies
    for name in bodies:
        properties = schemas[name].get("properties", {})
        assert not [k for k, v in properties.items() if v.get("readOnly")], name
    assert set(schemas["ProjectInput"]["required"]) == {"slug", "name"}
    project = schemas["Project"]
    assert set(project["required"]) == set(project["properties"])  # id, times and defaults
    token = schemas["NewToken"]
    assert "expires_in_days" not in token["properties"]  # write-only: asked, never answered
    assert {"id", "token", "created_at"} <= set(token["required"])
    assert "expires_in_days" in schemas["NewTokenInput"]["properties"]
    patch = spec["paths"]["/api/v1/projects/{project_id}"]["patch"]
    update = patch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert update.endswith("/ProjectUpdate") and "id" not in schemas["ProjectUpdate"]["properties"]


def test_a_nullable_enum_is_one_enum_or_null(spec):
    reason = spec["components"]["schemas"]["Webhook"]["properties"]["disabled_reason"]
    assert reason["anyOf"] == [
        {"type": "string", "enum": ["by_owner", "gone", "failing"]},
        {"type": "null"},
    ]
    assert "enum" not in reason and "type" not in reason


def test_every_operation_has_a_description(spec):
    for path, method, operation in operations(spec):
        assert len(operation.get("description", "")) > 40, f"{method.upper()} {path}"
    assert spec["info"]["contact"] == {"name": "MARS API"}


def test_the_contact_comes_from_the_settings(make_app):
    app = make_app(API_CONTACT_EMAIL="api@example.org", API_CONTACT_URL="https://example.org/dev")
    contact = app.test_client().get("/api/v1/openapi.json").json["info"]["contact"]
    assert contact == {
        "name": "MARS API",
        "url": "https://example.org/dev",
        "email": "api@example.org",
    }


def test_real_problem_bodies_match_the_problem_schema(app, spec, create_user, token_for):
    """RFC 9457 extension members (a 429's ``retry_after``, an insufficient-scope 403's
    ``scope``) are documented, and the schema admits others; what MARS sends validates."""
    from openapi_schema_validator import OAS31Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    from mars_server.testing import signed_in_client

    document = Resource.from_contents(spec, default_specification=DRAFT202012)
    validator = OAS31Validator(
        {"$ref": "urn:mars:openapi#/components/schemas/Problem"},
        registry=Registry().with_resource("urn:mars:openapi", document),
    )
    user = create_user(password="correct horse battery staple")
    client = app.test_client()
    bodies = {}
    change = signed_in_client(app, user)
    for _ in range(6):
        wrong = change.post(
            "/api/v1/me/password",
            json={"current_password": "not it at all", "new_password": "another passphrase"},
        )
    bodies["sign-in 429"] = wrong
    for n in range(11):
        asked = client.post("/api/v1/accounts/password-reset", json={"email": f"a{n}@example.test"})
    bodies["mail 429"] = asked
    bodies["insufficient scope"] = client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {token_for(user, ['apps:read'])}"}
    )
    bodies["validation"] = client.post("/api/v1/accounts", json={"email": "x"})
    for name, response in bodies.items():
        errors = [error.message for error in validator.iter_errors(response.json)]
        assert errors == [], (name, response.json)
    assert [r.status_code for r in bodies.values()] == [429, 429, 403, 422]
    assert "retry_after" in bodies["mail 429"].json and "scope" in bodies["insufficient scope"].json

    for path in ("/api/v1/accounts", "/api/v1/accounts/password-reset", "/api/v1/me/password"):
        assert spec["paths"][path]["post"]["responses"]["429"] == {
            "$ref": "#/components/responses/TOO_MANY_REQUESTS"
        }
    too_many = spec["components"]["responses"]["TOO_MANY_REQUESTS"]
    assert too_many["headers"] == {
        name: {"$ref": f"#/components/headers/{name}"}
        for name in ("Retry-After", "RateLimit", "RateLimit-Policy")
    }
