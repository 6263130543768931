"""GraphQL at /api/v1/graphql: composed from plugins, over HTTP, with limits; GraphiQL; SDL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy.exc as sa_exc
from graphql import get_introspection_query, located_error
from sqlalchemy.orm.exc import StaleDataError

from mars_server.graphql.cli import COMMITTED
from mars_server.graphql.schema import sdl
from mars_server.graphql.views import ERRORS_LOG, format_error
from mars_server.plugins import PluginError
from mars_server.state import mars_state
from mars_server.testing import graphql, signed_in_client
from tests import graphql_plugin

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "Stars"


def post(client, query, headers=None, **variables):
    return client.post(
        "/api/v1/graphql", json={"query": query, "variables": variables}, headers=headers or {}
    )


def test_hook_mars_graphql(install_plugins, make_app):
    install_plugins(stars=PLUGIN)
    app = make_app()
    alice = signed_in_client(app)
    graphql_plugin.GIVEN.clear()
    given = graphql(alice, "mutation { giveStar { by } }")
    assert given == {"data": {"giveStar": {"by": alice.user.id}}}
    created = alice.post("/api/v1/projects", json={"slug": "vega", "name": "Vega"})
    answer = graphql(
        alice,
        "query($id: ID!) { stars { by } me { id starsGiven } project(id: $id) { brightness } }",
        id=created.json["id"],
    )
    assert answer == {
        "data": {
            "stars": [{"by": alice.user.id}],
            "me": {"id": alice.user.id, "starsGiven": 1},
            "project": {"brightness": 4},
        }
    }
    # Without the plugin, its fields are not in the schema.
    other = make_app(PLUGINS_DISABLED=["stars"])
    assert "Star" not in sdl(mars_state(other).graphql_schema)


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        ("type Broken {", "its GraphQL SDL"),
        ("extend type Nowhere { x: Int }", "Nowhere"),
        ("type Project { id: ID! }", "Project"),
    ],
)
def test_a_part_that_does_not_fit_stops_start_up_naming_its_plugin(
    install_plugins, make_app, monkeypatch, broken, says
):
    install_plugins(stars=PLUGIN)
    monkeypatch.setattr(graphql_plugin, "SDL", graphql_plugin.SDL + broken)
    with pytest.raises(PluginError, match="plugin 'stars'") as caught:
        make_app()
    assert says in str(caught.value)


def test_a_failed_mutation_leaves_nothing_for_the_next_to_commit(install_plugins, make_app):
    install_plugins(stars=PLUGIN)
    alice = signed_in_client(make_app())
    answer = post(
        alice,
        """mutation {
          half: failAfterWriting(slug: "half")
          whole: createProject(input: {slug: "whole", name: "Whole"}) { slug }
        }""",
    ).json
    assert answer["data"] == {"half": None, "whole": {"slug": "whole"}}
    assert answer["errors"][0]["path"] == ["half"]
    assert answer["errors"][0]["extensions"]["status"] == 500
    slugs = [p["slug"] for p in alice.get("/api/v1/projects?visibility=public").json["items"]]
    assert slugs == []  # "half" was rolled back, not committed with "whole"
    assert [p["slug"] for p in alice.get("/api/v1/projects").json["items"]] == ["whole"]


def test_a_resolver_for_an_undeclared_field_stops_start_up(install_plugins, make_app, monkeypatch):
    install_plugins(stars=PLUGIN)
    monkeypatch.setattr(graphql_plugin, "SDL", graphql_plugin.SDL.replace("starsGiven", "given"))
    with pytest.raises(
        PluginError, match=r"plugin 'stars': .* starsGiven is not defined on type Me"
    ):
        make_app()


def test_me_is_the_caller(app):
    alice = signed_in_client(app, scopes=["projects:read"])
    assert graphql(alice, "{ me { id scopes } }") == {
        "data": {"me": {"id": alice.user.id, "scopes": ["projects:read"]}}
    }
    assert graphql(app.test_client(), "{ me { id } }") == {"data": {"me": None}}


def test_get_runs_queries_and_refuses_mutations(app):
    alice = signed_in_client(app)
    answer = alice.get("/api/v1/graphql", query_string={"query": "{ me { id } }"})
    assert answer.status_code == 200 and answer.json["data"]["me"]["id"] == alice.user.id
    assert answer.headers["Content-Type"] == "application/graphql-response+json"
    with_variables = alice.get(
        "/api/v1/graphql",
        query_string={
            "query": "query($f: Int) { projects(first: $f) { nodes { id } } }",
            "variables": json.dumps({"f": 1}),
        },
    )
    assert with_variables.json == {"data": {"projects": {"nodes": []}}}
    refused = alice.get(
        "/api/v1/graphql",
        query_string={"query": 'mutation { createProject(input: {slug: "x", name: "X"}) { id } }'},
    )
    assert refused.status_code == 405 and refused.headers["Allow"] == "POST"
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert alice.get("/api/v1/projects").json["items"] == []  # nothing was created


@pytest.mark.parametrize(
    ("kwargs", "status", "detail"),
    [
        ({"json": {"variables": {}}}, 400, "Send a GraphQL document as `query`."),
        ({"json": {"query": "{ me { id } }", "variables": [1]}}, 400, "`variables`"),
        ({"json": ["{ me { id } }"]}, 400, "JSON object"),
        ({"data": "query { me { id } }"}, 415, "application/json"),
        ({"data": "{", "content_type": "application/json"}, 400, None),
    ],
)
def test_a_request_graphql_cannot_run_is_a_problem(app, kwargs, status, detail):
    response = app.test_client().post("/api/v1/graphql", **kwargs)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "Traceback" not in response.get_data(as_text=True)
    if detail:
        assert detail in response.json["detail"]


def test_document_errors_are_graphql_errors_with_their_problem(app):
    client = app.test_client()
    syntax = post(client, "{ me { id }")
    assert syntax.status_code == 400  # application/graphql-response+json: a 400
    error = syntax.json["errors"][0]
    assert error["message"].startswith("Syntax Error")
    assert error["extensions"]["type"] == "urn:mars:problem:graphql-invalid"
    assert error["extensions"]["request_id"] == syntax.headers["X-Request-ID"]
    as_json = post(client, "{ nope }", headers={"Accept": "application/json"})
    assert as_json.status_code == 200 and as_json.headers["Content-Type"] == "application/json"
    assert as_json.json["errors"][0]["message"] == "Cannot query field 'nope' on type 'Query'."
    wrong_variable = post(client, "query($f: Int) { projects(first: $f) { nodes { id } } }", f="x")
    assert wrong_variable.status_code == 400
    assert "Int cannot represent" in wrong_variable.json["errors"][0]["message"]


def test_an_invalid_token_is_a_401_for_the_whole_request(app):
    response = app.test_client().post(
        "/api/v1/graphql",
        json={"query": "{ me { id } }"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert response.status_code == 401
    assert response.json["type"] == "urn:mars:problem:invalid-token"


def test_depth_cost_and_size_are_limited(make_app):
    query = "{ projects { nodes { members { userId } } } }"  # four fields deep
    assert post(make_app(GRAPHQL_MAX_DEPTH=4).test_client(), query).status_code == 200
    client = make_app(GRAPHQL_MAX_DEPTH=3).test_client()
    for shallower in (
        query,
        "fragment P on ProjectConnection { nodes { members { userId } } } { projects { ...P } }",
    ):
        refused = post(client, shallower)
        assert refused.status_code == 400
        error = refused.json["errors"][0]
        assert error["message"] == "The operation nests 4 fields deep; at most 3 may be."
        assert error["extensions"]["type"] == "urn:mars:problem:graphql-limit"
    client = make_app().test_client()
    # Cost: every alias and every item a page may hold counts.
    wide = " ".join(
        f"p{n}: projects(first: 200) {{ nodes {{ id members {{ userId }} }} }}" for n in range(20)
    )
    costly = post(client, f"{{ {wide} }}")
    assert costly.status_code == 400
    error = costly.json["errors"][0]
    assert error["extensions"]["type"] == "urn:mars:problem:graphql-limit"
    assert error["extensions"]["limit"] == "cost" and "maximum cost of 20000" in error["message"]
    cheap = post(client, "{ projects(first: 200) { nodes { id members { userId } } } }")
    assert cheap.status_code == 200
    tokens = post(client, "{ " + "me { id } " * 2000 + "}")
    assert tokens.status_code == 400
    assert "more than 5000 tokens" in tokens.json["errors"][0]["message"]


def test_introspection_is_on_and_asked_for_at_most_twice(app):
    client = app.test_client()
    answer = post(client, get_introspection_query(descriptions=True))
    assert answer.status_code == 200, answer.json
    types = {t["name"] for t in answer.json["data"]["__schema"]["types"]}
    assert {"Project", "ProjectConnection", "Me", "PageInfo", "DateTime"} <= types
    twice = '{ a: __schema { queryType { name } } b: __type(name: "Me") { name } }'
    assert post(client, twice).status_code == 200
    thrice = "fragment S on Query { c: __schema { types { name } } } " + twice[:-1] + "...S }"
    refused = post(client, thrice)
    assert refused.status_code == 400, refused.json
    [error] = refused.json["errors"]
    assert error["message"] == "The document asks for the schema more than 2 times."
    assert error["extensions"]["limit"] == "introspection"


def test_fragments_spread_many_times_are_checked_at_once(app):
    """Forty fragments each spreading the one below twice: 2**40 paths. The depth rule
    measures each fragment once (it took minutes for 30 before); the cost refuses it."""
    fragments = ["fragment F0 on Query { me { id } }"]
    fragments += [f"fragment F{n} on Query {{ ...F{n - 1} ...F{n - 1} }}" for n in range(1, 41)]
    answer = post(app.test_client(), "{ ...F40 } " + " ".join(fragments))
    assert answer.status_code == 400, answer.json
    [error] = answer.json["errors"]  # the depth rule found nothing wrong: 2 deep
    assert error["extensions"]["limit"] == "cost", error


def test_first_can_be_left_out_but_never_null(make_app):
    client = make_app(PAGE_SIZE_DEFAULT=7).test_client()
    schema_first = post(
        client,
        '{ __type(name: "Query") { fields { name args { name defaultValue type { kind } } } } }',
    )
    projects = next(
        f for f in schema_first.json["data"]["__type"]["fields"] if f["name"] == "projects"
    )
    first = next(a for a in projects["args"] if a["name"] == "first")
    assert first == {"name": "first", "defaultValue": "7", "type": {"kind": "NON_NULL"}}
    null = post(client, "{ projects(first: null) { nodes { id } } }")
    assert null.status_code == 400
    assert "null" in null.json["errors"][0]["message"]


def test_every_type_and_field_has_a_description(app):
    schema = mars_state(app).graphql_schema
    missing = []
    for name, named in schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Boolean", "ID", "Float"}:
            continue
        if not named.description and name not in {"Query", "Mutation"}:
            missing.append(name)
        for field_name, field in getattr(named, "fields", {}).items():
            if not field.description and field_name not in {"id"}:
                missing.append(f"{name}.{field_name}")
    assert not missing, f"describe these in the SDL: {missing}"


def test_the_committed_sdl_is_the_schema(app):
    """Fails on any difference: run `mars graphql export -o docs/schema.graphql`."""
    committed = (ROOT / COMMITTED).read_text()
    assert committed == sdl(mars_state(app).graphql_schema), "re-export docs/schema.graphql"


def test_mars_graphql_export_writes_the_sdl(app, tmp_path):
    out = tmp_path / "schema.graphql"
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["graphql", "export", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == sdl(mars_state(app).graphql_schema)
    assert re.search(r"^type Project \{", out.read_text(), re.M)


def test_graphiql_is_served_from_installed_files(app):
    client = app.test_client()
    page = client.get("/api/graphql")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "http" not in html.replace("http-equiv", "")  # no address elsewhere
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) == 5
    for asset in assets:
        response = client.get(f"/api/{asset}")
        assert response.status_code == 200, asset
        assert len(response.get_data()) > 100
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert client.get("/api/graphql/assets/../views.py").status_code == 404


@pytest.mark.parametrize(
    ("raised", "status", "detail"),
    [
        (
            sa_exc.IntegrityError(
                "INSERT INTO t VALUES (?)", ("secret-value",), Exception("UNIQUE")
            ),
            409,
            "The change conflicts with the current state of the data.",
        ),
        (
            sa_exc.DataError("SELECT ?", ("secret-value",), Exception("out of range")),
            400,
            "A value in the request cannot be stored or compared.",
        ),
        (StaleDataError("UPDATE matched 0 rows"), 412, None),
        (ZeroDivisionError("secret-value"), 500, None),
    ],
)
def test_failures_are_answered_with_rests_problems_and_no_data(app, caplog, raised, status, detail):
    with app.test_request_context():
        formatted = format_error(located_error(raised, None, ["createThing"]))
        ERRORS_LOG.error(located_error(raised, None, ["createThing"]))
    assert formatted["extensions"]["status"] == status
    assert formatted["path"] == ["createThing"]
    if detail:
        assert formatted["message"] == detail
    assert "secret-value" not in json.dumps(formatted)
    assert "Traceback" not in json.dumps(formatted)
    # Only a bug is logged here, by type, with its traceback for the operators (as REST
    # logs one); a database's refusal, which may quote the data, is not.
    assert ("secret-value" in caplog.text) == (status == 500)
    assert ("a GraphQL resolver failed: ZeroDivisionError" in caplog.text) == (status == 500)


def test_a_mutation_is_audited_as_its_rest_operation_is(app, db):
    """The same audit entry as REST's POST /api/v1/projects writes, with the request's
    actor, address, user agent and id."""
    import sqlalchemy as sa

    from mars_server.audit.models import AuditRecord

    alice = signed_in_client(app)
    rest = alice.post("/api/v1/projects", json={"slug": "by-rest", "name": "By REST"})
    answer = post(
        alice,
        'mutation { createProject(input: {slug: "by-graphql", name: "By GraphQL"}) { id } }',
        headers={"User-Agent": "mission-control/2"},
    )
    created = answer.json["data"]["createProject"]["id"]

    def entry(target):
        with app.app_context():
            return db.session.scalars(
                sa.select(AuditRecord).where(
                    AuditRecord.action == "project.created", AuditRecord.target == target
                )
            ).one()

    by_rest, by_graphql = entry(rest.json["id"]), entry(created)
    assert by_graphql.actor_id == by_rest.actor_id == alice.user.id
    assert by_graphql.request_id == answer.headers["X-Request-ID"]
    assert by_graphql.user_agent == "mission-control/2"
    assert by_graphql.address == by_rest.address
    assert set(by_graphql.details) == set(by_rest.details)
