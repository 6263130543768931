"""Typed errors from MARS's problem documents, and pagination over 1,000 items."""

from __future__ import annotations

import pytest

from mars_sdk import (
    AuthenticationError,
    BadRequest,
    Conflict,
    MarsClient,
    MarsError,
    NotFound,
    Page,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
    ValidationError,
)
from mars_sdk.models import Project
from mars_server.db import db, new_id, utcnow

pytest_plugins = ["tests.sdk.fixtures"]


def test_401_without_or_with_a_bad_token(live_server):
    for client in (MarsClient(live_server), MarsClient(live_server, token="mars_pat_wrong")):
        with client, pytest.raises(AuthenticationError) as raised:
            client.me.get()
        error = raised.value
        assert error.status == 401 and error.problem["status"] == 401
        assert error.headers["WWW-Authenticate"].startswith("Bearer")
        assert error.request_id and error.request_id in str(error)


def test_403_for_a_missing_scope_or_permission(sdk):
    reader = sdk(scopes=["projects:read"])
    with pytest.raises(PermissionDenied) as raised:
        reader.projects.create(slug="x", name="X")
    assert raised.value.type == "urn:mars:problem:insufficient-scope"
    assert 'scope="projects:write"' in raised.value.headers["WWW-Authenticate"]
    with pytest.raises(PermissionDenied) as raised:
        sdk().users.list()  # a member is not an admin
    assert raised.value.type == "urn:mars:problem:forbidden"


def test_404_for_what_does_not_exist_or_is_not_yours(sdk):
    owner, stranger = sdk(), sdk()
    project = owner.projects.create(slug="mine", name="Mine")
    for client, project_id in ((owner, "prj_nothing"), (stranger, project.id)):
        with pytest.raises(NotFound) as raised:
            client.projects.get(project_id=project_id)
        assert raised.value.status == 404 and raised.value.request_id


def test_409_for_a_taken_slug(sdk):
    client = sdk()
    client.projects.create(slug="taken", name="One")
    with pytest.raises(Conflict) as raised:
        client.projects.create(slug="taken", name="Two")
    assert raised.value.type == "urn:mars:problem:conflict"


def test_412_for_a_stale_etag(sdk):
    client = sdk()
    project = client.projects.create(slug="p", name="P")
    client.projects.update(project_id=project.id, if_match=project, name="Q")
    with pytest.raises(PreconditionFailed) as raised:
        client.projects.delete(project_id=project.id, if_match=project)
    assert raised.value.status == 412
    assert client.projects.get(project_id=project.id).name == "Q"


def test_422_carries_the_field_errors(sdk):
    with pytest.raises(ValidationError) as raised:
        sdk().projects.create(slug="Not A Slug!", name="")
    error = raised.value
    assert error.type == "urn:mars:problem:validation-error"
    assert {e.pointer for e in error.errors} == {"/slug", "/name"}
    assert all(e.location == "json" and e.detail for e in error.errors)
    assert "/slug: " in str(error) and "/name: " in str(error)


def test_400_for_a_bad_cursor_and_a_model_without_etag(sdk):
    client = sdk()
    with pytest.raises(BadRequest) as raised:
        client.projects.list(cursor="tampered")
    assert "cursor" in raised.value.detail
    with pytest.raises(ValueError, match="carries no ETag"):
        client.projects.delete(project_id="prj_x", if_match=Project.from_json(_project_json()))
    assert issubclass(BadRequest, MarsError)


def _project_json():
    now = utcnow().isoformat()
    return {
        "id": "prj_x",
        "slug": "x",
        "name": "X",
        "description": "",
        "visibility": "private",
        "created_at": now,
        "updated_at": now,
    }


@pytest.fixture
def thousand_projects(app):
    """1,000 public projects, inserted directly: what is tested is reading them."""
    now = utcnow()
    ids = sorted(new_id("prj") for _ in range(1000))
    table = db.metadata.tables["projects"]
    rows = [
        {
            "id": project_id,
            "slug": f"p-{n}",
            "name": f"Project {n}",
            "description": "",
            "visibility": "public",
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        for n, project_id in enumerate(ids)
    ]
    with db.engine.begin() as conn:
        conn.execute(table.insert(), rows)
    return ids


def test_iterating_follows_next_cursor_across_pages(live_server, thousand_projects):
    pages_fetched = []
    with MarsClient(live_server) as client:
        client.session.hooks["response"].append(lambda r, **_: pages_fetched.append(r.url))
        projects = client.projects.list(limit=200)
        assert len(pages_fetched) == 1  # the first page, fetched by the call
        first = next(projects)
        assert isinstance(first, Project) and first.id == thousand_projects[0]
        assert len(pages_fetched) == 1  # the next pages wait until they are needed
        rest = list(projects)
        assert [first.id] + [p.id for p in rest] == thousand_projects
        assert len(pages_fetched) == 5
        assert all("cursor=" in url for url in pages_fetched[1:])

        pages = list(client.projects.list(limit=150).pages())
        assert [len(p.items) for p in pages] == [150] * 6 + [100]
        assert all(isinstance(p, Page) for p in pages)
        assert pages[-1].next_cursor is None and all(p.next_cursor for p in pages[:-1])
        # the default page size (50): 20 pages, every project once
        assert len({p.id for p in client.projects.list()}) == 1000


def test_429_from_mars_itself_is_rate_limited_with_retry_after(sdk):
    """Wrong current passwords count as failed sign-ins; past the limit MARS answers 429
    with a Retry-After too long to wait for: the SDK raises at once."""
    client = sdk()
    for guess in range(5):
        with pytest.raises(ValidationError):
            client.me.change_password(current_password=f"guess {guess}", new_password="x" * 20)
    with pytest.raises(RateLimited) as raised:
        client.me.change_password(current_password="guess 6", new_password="x" * 20)
    error = raised.value
    assert error.status == 429 and 0 < error.retry_after <= 15 * 60
    assert error.problem["type"] == "urn:mars:problem:too-many-sign-in-attempts"
    assert error.request_id
