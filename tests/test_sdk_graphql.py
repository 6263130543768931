"""``client.graphql(query, variables)`` against a live MARS."""

from __future__ import annotations

import pytest

from mars_sdk import AuthenticationError, GraphQLError, MarsClient

pytestmark = pytest.mark.mars_sdk_live

CREATE = """
mutation($input: ProjectInput!) {
  createProject(input: $input) { id slug version }
}"""
PROJECTS = """
query($first: Int, $after: String) {
  projects(first: $first, after: $after) {
    nodes { slug members { userId role } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def test_queries_and_mutations_return_their_data(sdk):
    client = sdk()
    created = client.graphql(CREATE, {"input": {"slug": "hubble", "name": "Hubble"}})
    assert created["createProject"]["slug"] == "hubble"
    assert client.projects.get(created["createProject"]["id"]).name == "Hubble"
    client.graphql(CREATE, {"input": {"slug": "webb", "name": "Webb"}})
    first = client.graphql(PROJECTS, {"first": 1})["projects"]
    assert first["nodes"] == [
        {"slug": "hubble", "members": [{"userId": client.user.id, "role": "OWNER"}]}
    ]
    rest = client.graphql(PROJECTS, {"first": 1, "after": first["pageInfo"]["endCursor"]})
    assert [p["slug"] for p in rest["projects"]["nodes"]] == ["webb"]
    named = client.graphql("query A { me { id } } query B { me { scopes } }", operation_name="A")
    assert named == {"me": {"id": client.user.id}}


def test_a_mutation_retried_with_its_key_is_done_once(sdk):
    client = sdk()
    body = {"input": {"slug": "once", "name": "Once"}}
    first = client.graphql(CREATE, body, idempotency_key="create-once")
    again = client.graphql(CREATE, body, idempotency_key="create-once")
    assert first == again
    assert [p.slug for p in client.projects.list()] == ["once"]


def test_errors_raise_graphql_error_with_what_succeeded(sdk):
    client = sdk()
    client.graphql(CREATE, {"input": {"slug": "taken", "name": "Taken"}})
    with pytest.raises(GraphQLError) as caught:
        client.graphql(
            """mutation {
              a: createProject(input: {slug: "free", name: "Free"}) { slug }
              b: createProject(input: {slug: "taken", name: "Again"}) { slug }
            }"""
        )
    error = caught.value
    assert error.status == 409 and error.type == "urn:mars:problem:conflict"
    assert str(error).startswith("b: ") and error.request_id
    assert error.data is None  # b is non-null: the whole answer is null, though a was done
    with pytest.raises(GraphQLError) as caught:
        client.graphql("{ nope }")
    assert caught.value.status == 400 and "nope" in caught.value.message
    with pytest.raises(GraphQLError) as caught:
        client.graphql('{ me { id } project(id: "prj_none") { id } }')
    assert caught.value.data == {"me": {"id": client.user.id}, "project": None}
    assert caught.value.status == 404


def test_a_token_that_is_not_valid_is_the_usual_error(live_server):
    with MarsClient(live_server, token="not-a-token") as client, pytest.raises(AuthenticationError):
        client.graphql("{ me { id } }")


def test_only_a_document_with_a_mutation_gets_an_idempotency_key(sdk):
    client = sdk()
    sent = []
    client.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.headers))
    client.graphql("# no mutation here\n{ me { id } }")
    client.graphql("query Mine { me { id } }")
    client.graphql(
        '# a comment\nmutation { a: createProject(input: {slug: "k", name: "K"}) { id } }'
    )
    client.graphql(
        'query A { me { id } }\nmutation B { createProject(input: {slug: "l", name: "L"}) { id } }',
        operation_name="A",
    )
    keys = ["Idempotency-Key" in headers for headers in sent]
    assert keys == [False, False, True, True]
