"""The list conventions every list shares (docs/http.md#lists): ``?sort=`` with keyset
cursors bound to it, ``?fields=``, ``?q=`` (PostgreSQL full-text search, SQLite FTS5), through
the projects list, on both databases."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
import time_machine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mars_server.http import Sort
from mars_server.testing import signed_in_client

# Ties ("alpha" twice) are broken by the id; no two names differ only in case, which the
# databases' collations may order differently.
NAMES = ["delta", "alpha", "charlie", "bravo", "alpha", "echo", "kilo"]


def walk(client, query: str) -> list[dict]:
    """Every item of the list, following ``Link`` from page to page."""
    items, url = [], f"/api/v1/projects?{query}"
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.json
        items += response.json["items"]
        link = response.headers.get("Link")
        url = (
            link[link.index("<") + 1 : link.index(">")].split("localhost", 1)[-1] if link else None
        )
    return items


def make_projects(client, names=NAMES, **fields):
    made = []
    for n, name in enumerate(names):
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower())
        body = {"slug": f"p{n}-{slug}-{len(made)}", "name": name, **fields}
        response = client.post("/api/v1/projects", json=body)
        assert response.status_code == 201, response.json
        made.append(response.json)
    return made


def test_sort_on_any_allowed_field_either_way_page_by_page(client):
    made = make_projects(client)
    by_name = sorted(made, key=lambda p: (p["name"], p["id"]))
    assert [p["id"] for p in walk(client, "sort=name&limit=2")] == [p["id"] for p in by_name]
    descending = sorted(made, key=lambda p: (p["name"], p["id"]), reverse=True)
    assert [p["id"] for p in walk(client, "sort=-name&limit=3")] == [p["id"] for p in descending]
    newest = [p["id"] for p in walk(client, "sort=-id&limit=2")]
    assert newest == [p["id"] for p in reversed(made)]
    assert [p["slug"] for p in walk(client, "sort=slug&limit=4")] == sorted(p["slug"] for p in made)


def test_a_sort_on_timestamps_survives_the_cursor(client):
    made = []
    for day in (3, 1, 2):
        with time_machine.travel(f"2026-01-0{day} 12:00:00+00:00", tick=False):
            made += make_projects(client, [f"day{day}"])
    ordered = walk(client, "sort=-created_at&limit=1")
    assert [p["name"] for p in ordered] == ["day3", "day2", "day1"]
    with time_machine.travel("2026-01-04 12:00:00+00:00", tick=False):
        same_time = make_projects(client, ["x", "y", "z"])  # ties, broken by the id
    assert len({p["created_at"] for p in same_time}) == 1
    assert [p["id"] for p in walk(client, "sort=created_at&limit=2")][-3:] == [
        p["id"] for p in same_time
    ]
    assert [p["id"] for p in walk(client, "sort=-created_at&limit=2")][:3] == [
        p["id"] for p in reversed(same_time)
    ]
    assert [p["name"] for p in made] == ["day3", "day1", "day2"]


def test_a_cursor_is_bound_to_its_sort_and_search(client):
    make_projects(client)
    first = client.get("/api/v1/projects?sort=name&limit=2")
    cursor = first.json["next_cursor"]
    assert client.get(f"/api/v1/projects?sort=name&limit=2&cursor={cursor}").status_code == 200
    for other in ("sort=-name", "sort=slug", "", "sort=name&q=alpha"):
        refused = client.get(f"/api/v1/projects?{other}&limit=2&cursor={cursor}")
        assert refused.status_code == 400, other
        assert "start again without it" in refused.json["detail"]
    # ?fields= and ?limit= only shape the answer: the cursor stays good.
    fine = client.get(f"/api/v1/projects?sort=name&limit=5&fields=name&cursor={cursor}")
    assert fine.status_code == 200


def test_an_unknown_sort_or_field_is_a_clear_problem(client):
    for query, where in (("sort=description", "sort"), ("fields=id,secret", "fields")):
        response = client.get(f"/api/v1/projects?{query}")
        assert response.status_code == 422
        assert response.headers["Content-Type"] == "application/problem+json"
        assert any(where in e["pointer"] for e in response.json["errors"]), response.json


def test_fields_chooses_what_each_item_holds(client):
    make_projects(client, ["one", "two", "three"])
    response = client.get("/api/v1/projects?fields=name,visibility&limit=2")
    assert response.status_code == 200
    assert [set(item) for item in response.json["items"]] == [{"id", "name", "visibility"}] * 2
    assert "fields=name%2Cvisibility" in response.headers["Link"]  # kept on the next page
    everything = client.get("/api/v1/projects?limit=1").json["items"][0]
    assert {"slug", "description", "created_at", "updated_at"} <= set(everything)


def test_q_searches_name_slug_and_description(app, client):
    rover, lander, orbiter = make_projects(client, ["Mars Rover", "Lander", "Orbiter"])
    client.patch(
        f"/api/v1/projects/{lander['id']}",
        json={"description": "Sets the rover down gently"},
        headers={"If-Match": client.get(f"/api/v1/projects/{lander['id']}").headers["ETag"]},
    )

    def found(q: str) -> set[str]:
        return {p["name"] for p in walk(client, f"q={q}&limit=1")}

    assert found("rover") == {"Mars Rover", "Lander"}  # a name, a description
    assert found("ROVER gently") == {"Lander"}  # every word, any case
    assert found('"rover down"') == {"Lander"} and found('"down rover"') == set()
    assert found("p2") == {"Orbiter"}  # the slug
    assert found("nothing") == set()
    # Search syntax of either database is never read from the query: no 500, no surprise.
    for odd in ["NEAR(rover", "rover*", "name:rover", '"', "a OR b", "-rover", "'", "(", "^"]:
        response = client.get("/api/v1/projects", query_string={"q": odd})
        assert response.status_code == 200, (odd, response.json)
    assert found("-rover") == found("rover")  # not "without rover"
    assert found("rover OR lander") == set()  # every word, "or" among them: none has it
    assert found("rover or gently") == set()
    assert found("rover* gently!") == {"Lander"}  # punctuation is no operator
    # Changes are searchable at once; deleted projects are gone from the search.
    etag = client.get(f"/api/v1/projects/{orbiter['id']}").headers["ETag"]
    client.patch(
        f"/api/v1/projects/{orbiter['id']}", json={"name": "Rover two"}, headers={"If-Match": etag}
    )
    assert found("rover") == {"Mars Rover", "Lander", "Rover two"}
    etag = client.get(f"/api/v1/projects/{rover['id']}").headers["ETag"]
    assert (
        client.delete(f"/api/v1/projects/{rover['id']}", headers={"If-Match": etag}).status_code
        == 204
    )
    assert found("rover") == {"Lander", "Rover two"}
    # Searched, sorted and paged at once.
    assert [p["name"] for p in walk(client, "q=rover&sort=-name&limit=1")] == [
        "Rover two",
        "Lander",
    ]


def test_q_sees_only_what_the_caller_may_see(app, client):
    make_projects(client, ["Secret rover"], visibility="private")
    make_projects(client, ["Public rover"], visibility="public")
    stranger = signed_in_client(app)
    assert [p["name"] for p in walk(stranger, "q=rover")] == ["Public rover"]


def test_a_sort_refuses_what_a_keyset_cannot_walk():
    class Base(DeclarativeBase):
        pass

    class Thing(Base):
        __tablename__ = "things_sorted"
        id: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
        note: Mapped[str | None] = mapped_column(sa.String(10))
        price: Mapped[float] = mapped_column(sa.Numeric)
        name: Mapped[str] = mapped_column(sa.String(10))

    assert Sort({"name": Thing.name}, default="id").columns["name"] is Thing.name
    with pytest.raises(ValueError, match="may be NULL"):
        Sort({"note": Thing.note}, default="id")
    with pytest.raises(ValueError, match="cannot carry Decimal"):
        Sort({"price": Thing.price}, default="id")


def test_a_next_page_link_keeps_a_deprecation_link(app):
    from flask import g

    from mars_server.http.pagination import add_link_header

    with app.test_request_context("/api/v1/things"):
        g.link_next = "https://mars.example/api/v1/things?cursor=abc"
        response = app.response_class("{}")
        response.headers["Link"] = '<https://docs.example/m>; rel="deprecation"'
        links = add_link_header(response).headers["Link"]
    assert links == (
        '<https://mars.example/api/v1/things?cursor=abc>; rel="next", '
        '<https://docs.example/m>; rel="deprecation"'
    )


def test_search_indexes_are_no_stray_tables(app):
    """`mars plugins purge` lists tables no model declares: never a plugin's search index."""
    from mars_server.ops.migrations import undeclared_tables

    assert undeclared_tables() == []
