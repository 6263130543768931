"""Projects and members through GraphQL: the same services, rules and events as REST."""

from __future__ import annotations

from mars_server.testing import graphql, signed_in_client

PROJECTS = """
query($first: Int, $after: String, $sort: String, $q: String) {
  projects(first: $first, after: $after, sort: $sort, q: $q) {
    nodes { id slug name visibility version members { userId role } }
    pageInfo { hasNextPage endCursor }
  }
}"""
ADD_MEMBER = """
mutation($id: ID!, $u: ID!, $role: ProjectRole = MEMBER) {
  addProjectMember(projectId: $id, userId: $u, role: $role) { userId role }
}"""
CREATE = """
mutation($input: ProjectInput!) {
  createProject(input: $input) { id slug name visibility version createdAt members { userId role } }
}"""


def create(client, **fields):
    answer = graphql(client, CREATE, input={"slug": "p", "name": "P"} | fields)
    assert "errors" not in answer, answer
    return answer["data"]["createProject"]


def test_create_and_read_a_project(alice, outbox):
    project = create(alice, slug="apollo", name="Apollo", visibility="PUBLIC")
    assert project["visibility"] == "PUBLIC" and project["version"] == 1
    assert project["members"] == [{"userId": alice.user.id, "role": "OWNER"}]
    event = outbox.all("project.created")[-1]
    assert event.payload["id"] == project["id"] and event.actor_id == alice.user.id
    rest = alice.get(f"/api/v1/projects/{project['id']}").json
    assert rest["slug"] == "apollo" and rest["created_at"] == project["createdAt"]
    again = graphql(alice, "query($id: ID!) { project(id: $id) { name } }", id=project["id"])
    assert again == {"data": {"project": {"name": "Apollo"}}}


def test_another_persons_private_project_is_null_and_untouchable(app, alice, bob):
    """The REST probes of test_projects_access, through GraphQL: nothing leaks."""
    secret = create(alice, slug="secret", name="Secret")
    pid, version = secret["id"], secret["version"]
    for client in (bob, app.test_client()):
        answer = graphql(client, "query($id: ID!) { project(id: $id) { id name } }", id=pid)
        assert answer["data"] == {"project": None}
        assert answer["errors"][0]["extensions"]["status"] == 404
        listed = graphql(client, PROJECTS, first=200)["data"]["projects"]["nodes"]
        assert pid not in {p["id"] for p in listed}
    probes = [
        ('updateProject(id: $id, version: 1, input: {name: "Mine"}) { id }', {}),
        ("deleteProject(id: $id, version: 1)", {}),
        ("addProjectMember(projectId: $id, userId: $user, role: OWNER) { role }", {"user": 1}),
        ("removeProjectMember(projectId: $id, userId: $user)", {"user": 1}),
    ]
    for field, extra in probes:
        declared = "$id: ID!" + (", $user: ID!" if extra else "")
        answer = graphql(
            bob,
            f"mutation({declared}) {{ {field} }}",
            id=pid,
            **({"user": bob.user.id} if extra else {}),
        )
        assert answer["data"] is None, field
        assert answer["errors"][0]["extensions"]["status"] == 404, answer
        assert pid in answer["errors"][0]["message"]
    unchanged = graphql(
        alice, "query($id: ID!) { project(id: $id) { name version members { userId } } }", id=pid
    )
    assert unchanged["data"]["project"] == {
        "name": "Secret",
        "version": version,
        "members": [{"userId": alice.user.id}],
    }


def test_scopes_and_roles_are_those_of_rest(app, alice, bob):
    public = create(alice, slug="open", name="Open", visibility="PUBLIC")
    anonymous = graphql(app.test_client(), CREATE, input={"slug": "x", "name": "X"})
    assert (
        anonymous["errors"][0]["extensions"]["type"] == "urn:mars:problem:authentication-required"
    )
    reader = signed_in_client(app, scopes=["projects:read"])
    refused = graphql(reader, CREATE, input={"slug": "x", "name": "X"})["errors"][0]
    assert refused["extensions"]["type"] == "urn:mars:problem:insufficient-scope"
    assert refused["extensions"]["scope"] == "projects:write"
    not_a_maintainer = graphql(
        bob,
        'mutation($id: ID!) { updateProject(id: $id, version: 1, input: {name: "Mine"}) { name } }',
        id=public["id"],
    )
    assert not_a_maintainer["errors"][0]["extensions"]["status"] == 403
    without_read = signed_in_client(app, scopes=["account:read"])
    assert graphql(without_read, PROJECTS)["errors"][0]["extensions"]["status"] == 403
    assert (
        graphql(app.test_client(), PROJECTS)["data"]["projects"]["nodes"][0]["id"] == public["id"]
    )


def test_bad_input_is_refused_field_by_field_and_changes_nothing(alice, outbox):
    answer = graphql(alice, CREATE, input={"slug": "Not A Slug", "name": ""})
    problem = answer["errors"][0]["extensions"]
    assert problem["status"] == 422 and problem["type"] == "urn:mars:problem:validation-error"
    assert {e["pointer"] for e in problem["errors"]} == {"/slug", "/name"}
    assert answer["errors"][0]["message"].startswith("slug: Use 1-64 lower-case letters")
    create(alice, slug="taken")
    before = len(outbox.all())
    twice = graphql(
        alice,
        """mutation {
          a: createProject(input: {slug: "fresh", name: "Fresh"}) { id }
          b: createProject(input: {slug: "taken", name: "Again"}) { id }
        }""",
    )
    assert twice["data"] is None  # b is non-null and failed
    assert twice["errors"][0]["extensions"]["status"] == 409 and twice["errors"][0]["path"] == ["b"]
    slugs = {p["slug"] for p in graphql(alice, PROJECTS)["data"]["projects"]["nodes"]}
    assert slugs == {"taken", "fresh"}  # a is done (mutations run one by one), b left nothing
    assert len(outbox.all()) == before + 1


def test_update_delete_and_members_go_through_the_services(app, alice, bob, outbox):
    project = create(alice, slug="crew", name="Crew")
    pid = project["id"]
    stale = graphql(
        alice,
        'mutation($id: ID!) { updateProject(id: $id, version: 7, input: {name: "X"}) { name } }',
        id=pid,
    )
    assert stale["errors"][0]["extensions"]["status"] == 412
    updated = graphql(
        alice,
        """mutation($id: ID!, $v: Int!) {
          updateProject(id: $id, version: $v, input: {name: "Crew 2", visibility: PUBLIC}) {
            name visibility version
          }
        }""",
        id=pid,
        v=project["version"],
    )["data"]["updateProject"]
    assert updated == {"name": "Crew 2", "visibility": "PUBLIC", "version": 2}
    assert outbox.all("project.updated")[-1].payload["name"] == "Crew 2"
    added = graphql(alice, ADD_MEMBER, id=pid, u=bob.user.id, role="MAINTAINER")
    assert added["data"]["addProjectMember"] == {"userId": bob.user.id, "role": "MAINTAINER"}
    assert outbox.all("project.member_added")
    unknown = graphql(alice, ADD_MEMBER, id=pid, u="usr_nobody")
    assert unknown["errors"][0]["extensions"]["status"] == 422
    left = graphql(
        bob,
        "mutation($id: ID!, $u: ID!) { removeProjectMember(projectId: $id, userId: $u) }",
        id=pid,
        u=bob.user.id,
    )
    assert left == {"data": {"removeProjectMember": True}}
    deleted = graphql(alice, "mutation($id: ID!) { deleteProject(id: $id, version: 2) }", id=pid)
    assert deleted == {"data": {"deleteProject": pid}}
    assert outbox.all("project.deleted")[-1].payload["id"] == pid
    assert alice.get(f"/api/v1/projects/{pid}").status_code == 404


def test_a_mutation_with_an_idempotency_key_is_done_once(alice):
    body = {"query": CREATE, "variables": {"input": {"slug": "once", "name": "Once"}}}
    headers = {"Idempotency-Key": "create-once"}
    first = alice.post("/api/v1/graphql", json=body, headers=headers)
    again = alice.post("/api/v1/graphql", json=body, headers=headers)
    assert first.json == again.json and "errors" not in first.json
    nodes = graphql(alice, PROJECTS)["data"]["projects"]["nodes"]
    assert [p["slug"] for p in nodes] == ["once"]


def test_connections_page_with_the_cursors_of_rest(alice):
    for n in range(5):
        create(alice, slug=f"p{n}", name=f"Name {4 - n}")
    rest = alice.get("/api/v1/projects?limit=2&sort=-name").json
    page = graphql(alice, PROJECTS, first=2, sort="-name")["data"]["projects"]
    assert [p["id"] for p in page["nodes"]] == [p["id"] for p in rest["items"]]
    assert page["pageInfo"] == {"hasNextPage": True, "endCursor": rest["next_cursor"]}
    seen = [p["slug"] for p in page["nodes"]]
    while page["pageInfo"]["hasNextPage"]:
        page = graphql(alice, PROJECTS, first=2, sort="-name", after=page["pageInfo"]["endCursor"])
        page = page["data"]["projects"]
        seen += [p["slug"] for p in page["nodes"]]
    assert seen == ["p0", "p1", "p2", "p3", "p4"]
    other_sort = graphql(alice, PROJECTS, first=2, sort="name", after=rest["next_cursor"])
    assert other_sort["errors"][0]["extensions"]["status"] == 400  # a cursor is bound to its sort
    assert graphql(alice, PROJECTS, q="Name 3")["data"]["projects"]["nodes"][0]["slug"] == "p1"
    bad_sort = graphql(alice, PROJECTS, sort="colour")["errors"][0]["extensions"]
    assert bad_sort["status"] == 422
    too_many = graphql(alice, PROJECTS, first=1000)["errors"][0]
    assert too_many["extensions"]["status"] == 422 and "first" in str(too_many["extensions"])


def test_fifty_projects_with_their_members_cost_a_fixed_number_of_statements(app, alice, db):
    import sqlalchemy as sa

    def statements(first):
        seen = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        sa.event.listen(db.engine, "before_cursor_execute", listener)
        try:
            answer = graphql(alice, PROJECTS, first=first)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", listener)
        assert len(answer["data"]["projects"]["nodes"]) == first, answer
        return seen

    from mars_projects import services
    from mars_projects.models import ProjectMember

    others = [signed_in_client(app).user.id for _ in range(2)]
    with app.app_context():  # 50 projects at once: past createProject's rate limit
        for n in range(50):
            project = services.create_project(alice.user.id, {"slug": f"s{n}", "name": f"S{n}"})
            for other in others[: n % 3]:
                db.session.add(ProjectMember(project_id=project.id, user_id=other, role="member"))
        db.session.commit()
    graphql(alice, PROJECTS, first=1)  # the token is looked up once, then cached
    few, fifty = statements(5), statements(50)
    assert (
        sum(
            len(p["members"])
            for p in graphql(alice, PROJECTS, first=50)["data"]["projects"]["nodes"]
        )
        == 99
    )
    assert len(fifty) == len(few), fifty
    assert len(fifty) == 2, fifty  # the page, and the members of all its projects


def test_a_mutation_reads_what_the_ones_before_it_changed(alice, bob):
    project = create(alice, slug="fresh")
    answer = graphql(
        alice,
        """mutation($id: ID!, $u: ID!) {
          before: updateProject(id: $id, version: 1, input: {name: "A"}) { members { userId } }
          added: addProjectMember(projectId: $id, userId: $u, role: MEMBER) { role }
          after: updateProject(id: $id, version: 2, input: {name: "B"}) { members { userId } }
        }""",
        id=project["id"],
        u=bob.user.id,
    )
    assert "errors" not in answer, answer
    assert len(answer["data"]["before"]["members"]) == 1
    assert {m["userId"] for m in answer["data"]["after"]["members"]} == {alice.user.id, bob.user.id}


def test_members_need_projects_read_as_in_rest(app, alice):
    project = create(alice, slug="scoped")
    writer = signed_in_client(app, alice.user, scopes=["projects:write"])
    answer = graphql(
        writer,
        """mutation($id: ID!) {
          updateProject(id: $id, version: 1, input: {}) { name members { userId } }
        }""",
        id=project["id"],
    )
    assert answer["data"] is None  # members is non-null: the error nulls the answer
    assert answer["errors"][0]["path"] == ["updateProject", "members"]
    assert answer["errors"][0]["extensions"]["status"] == 403
    assert writer.get(f"/api/v1/projects/{project['id']}/members").status_code == 403


def test_creating_projects_counts_against_rests_rate_limit(make_app):
    app = make_app()
    alice = signed_in_client(app)
    creates = " ".join(
        f'p{n}: createProject(input: {{slug: "r{n}", name: "R{n}"}}) {{ slug }}' for n in range(31)
    )
    answer = alice.post("/api/v1/graphql", json={"query": f"mutation {{ {creates} }}"}).json
    assert answer["data"] is None  # p30 is non-null and was refused
    [error] = answer["errors"]
    assert error["path"] == ["p30"] and error["extensions"]["status"] == 429
    assert error["extensions"]["violated-policies"] == ["create_project"]
    assert len(alice.get("/api/v1/projects?limit=200").json["items"]) == 30
    # REST's own create counts in the same policy: it is spent there too.
    assert alice.post("/api/v1/projects", json={"slug": "rest", "name": "Rest"}).status_code == 429


def test_a_refusal_a_retry_may_cure_frees_the_idempotency_key(make_app):
    app = make_app()
    alice = signed_in_client(app)
    for n in range(30):  # spend the create_project policy
        assert (
            alice.post("/api/v1/projects", json={"slug": f"q{n}", "name": "Q"}).status_code == 201
        )
    body = {"query": CREATE, "variables": {"input": {"slug": "later", "name": "Later"}}}
    headers = {"Idempotency-Key": "create-later"}
    first = alice.post("/api/v1/graphql", json=body, headers=headers).json
    again = alice.post("/api/v1/graphql", json=body, headers=headers).json
    assert first["errors"][0]["extensions"]["status"] == 429
    # Not a replay: the second request ran (a replay would repeat the first's request id).
    assert (
        again["errors"][0]["extensions"]["request_id"]
        != first["errors"][0]["extensions"]["request_id"]
    )
