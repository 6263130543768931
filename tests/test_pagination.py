"""Keyset pagination: limits, cursors, Link, and a page's query never OFFSETs."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeSerializer

from mars_server.db import new_id
from mars_server.testing import TEST_SECRET_KEY


@pytest.fixture
def many_projects(db, client):
    """Projects of the signed-in ``client``'s user (its member, so private ones are visible)."""

    def make(count: int, visibility: str = "public") -> list[str]:
        from mars_projects.models import Project, ProjectMember

        rows = [
            Project(id=new_id("prj"), slug=f"{visibility}-{i}", name=f"P{i}", visibility=visibility)
            for i in range(count)
        ]
        db.session.add_all(rows)
        db.session.flush()
        db.session.add_all(
            ProjectMember(project_id=row.id, user_id=client.user.id, role="owner") for row in rows
        )
        db.session.commit()
        return [row.id for row in rows]

    return make


def test_default_page_is_50_with_cursor_and_link(client, many_projects):
    many_projects(120)
    response = client.get("/api/v1/projects")
    assert response.status_code == 200
    assert len(response.json["items"]) == 50
    cursor = response.json["next_cursor"]
    assert cursor
    link = response.headers["Link"]
    assert link.startswith("<http://localhost/api/v1/projects?cursor=") and link.endswith(
        '>; rel="next"'
    )


def test_walking_every_page_yields_each_item_once_in_order(client, many_projects):
    ids = many_projects(230)
    seen, url, pages = [], "/api/v1/projects?limit=40", 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += [item["id"] for item in response.json["items"]]
        pages += 1
        url = response.headers.get("Link", "").partition("<")[2].partition(">")[0]
        url = url.replace("http://localhost", "")
    assert seen == sorted(ids)
    assert pages == 6
    assert response.json["next_cursor"] is None


def test_limit_is_capped_at_200(client, many_projects):
    many_projects(210)
    assert len(client.get("/api/v1/projects?limit=200").json["items"]) == 200
    response = client.get("/api/v1/projects?limit=201")
    assert response.status_code == 422
    assert response.json["errors"][0]["pointer"] == "/limit"


def test_filters_apply_across_pages(client, many_projects):
    many_projects(30, "public")
    private = many_projects(30, "private")
    first = client.get("/api/v1/projects?visibility=private&limit=20").json
    second = client.get(
        f"/api/v1/projects?visibility=private&limit=20&cursor={first['next_cursor']}"
    ).json
    assert [p["id"] for p in first["items"] + second["items"]] == sorted(private)


@pytest.mark.parametrize("cursor", ["garbage", "eyJrIjoxfQ", "a" * 300])
def test_bad_cursor_is_400(client, cursor):
    response = client.get(f"/api/v1/projects?cursor={cursor}")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert "cursor" in response.json["detail"]


def test_tampered_cursor_is_400(client, many_projects):
    many_projects(3)
    cursor = client.get("/api/v1/projects?limit=1").json["next_cursor"]
    scope, _last = URLSafeSerializer(TEST_SECRET_KEY, salt="mars.cursor.v1").loads(cursor)
    forged = URLSafeSerializer("another-key", salt="mars.cursor.v1").dumps([scope, "prj_0"])
    assert client.get(f"/api/v1/projects?cursor={forged}").status_code == 400
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    assert client.get(f"/api/v1/projects?cursor={tampered}").status_code == 400


def test_cursor_is_bound_to_its_filters(client, many_projects):
    many_projects(3, "public")
    cursor = client.get("/api/v1/projects?visibility=public&limit=1").json["next_cursor"]
    response = client.get(f"/api/v1/projects?visibility=private&limit=1&cursor={cursor}")
    assert response.status_code == 400


def test_page_query_seeks_instead_of_offsetting(app, client, many_projects, db):
    many_projects(5)
    cursor = client.get("/api/v1/projects?limit=2").json["next_cursor"]
    statements: list[tuple[str, tuple]] = []

    def record(conn, cursor_, statement, parameters, *args):
        statements.append((statement, tuple(parameters)))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        client.get(f"/api/v1/projects?limit=2&cursor={cursor}")
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    page_sql = [(s, p) for s, p in statements if "FROM projects" in s]
    assert len(page_sql) == 1
    sql, parameters = page_sql[0]
    # SQLite always renders "OFFSET ?"; it must be 0 there and absent elsewhere.
    assert "OFFSET" not in sql or parameters[-1] == 0
    assert "projects.id >" in sql
    assert "ORDER BY projects.id" in sql
