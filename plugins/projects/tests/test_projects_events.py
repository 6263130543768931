"""The events of projects: each change emits exactly its event, in its own transaction, and
members hear of what others did."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm.exc import StaleDataError

from mars_projects import services
from mars_projects.models import Project
from mars_server.http import Actor
from mars_server.testing import make_user, signed_in_client

PROJECT_FIELDS = ("id", "slug", "name", "description", "visibility", "created_at", "updated_at")


@pytest.fixture
def alice(app):
    return signed_in_client(app, make_user(app, display_name="Alice"))


@pytest.fixture
def bob(app):
    return signed_in_client(app, make_user(app, display_name="Bob"))


@pytest.fixture
def made(alice):
    """``made(**fields)``: a project of Alice's, through the API, with its ``etag``."""
    numbers = iter(range(1_000))

    def create(**fields):
        n = next(numbers)
        response = alice.post("/api/v1/projects", json={"slug": f"p-{n}", "name": f"P{n}"} | fields)
        assert response.status_code == 201, response.json
        return response.json | {"etag": response.headers["ETag"]}

    return create


def add(client, project_id, user, role="member"):
    return client.post(
        f"/api/v1/projects/{project_id}/members", json={"user_id": user.id, "role": role}
    )


def project_part(body):
    return {name: body[name] for name in PROJECT_FIELDS}


def test_hook_event_types_are_declared_and_published(app, client):
    declared = app.extensions["mars"].event_types
    names = {
        "project.created",
        "project.updated",
        "project.deleted",
        "project.member_added",
        "project.member_updated",
        "project.member_removed",
    }
    assert names <= set(declared)
    webhooks = client.get("/api/v1/openapi.json").json["webhooks"]
    assert names <= set(webhooks)
    assert webhooks["project.member_added"]["post"]["summary"] == "A user was added to a project."


def test_creating_emits_project_created(alice, made, outbox):
    public = made(name="Open", visibility="public", description="For all")
    event = outbox.one()
    assert event.type == "project.created"
    assert event.payload == project_part(public)
    assert event.audience is None  # public: anyone may see it
    assert event.actor_id == alice.user.id
    private = made(name="Closed")
    event = outbox.one()
    assert event.payload["id"] == private["id"]
    assert event.audience == [alice.user.id]


def test_a_refused_creation_emits_nothing(alice, made, outbox):
    made(slug="taken")
    outbox.new()
    response = alice.post("/api/v1/projects", json={"slug": "taken", "name": "Again"})
    assert response.status_code == 409
    assert alice.post("/api/v1/projects", json={"slug": "Bad Slug", "name": "X"}).status_code == 422
    assert outbox.new() == []


def test_updating_emits_project_updated_with_what_changed(alice, bob, made, outbox):
    project = made(name="Before")
    assert add(alice, project["id"], bob.user).status_code == 200
    outbox.new()
    response = alice.patch(
        f"/api/v1/projects/{project['id']}",
        json={"name": "After", "description": project["description"]},
        headers={"If-Match": project["etag"]},
    )
    assert response.status_code == 200
    event = outbox.one()
    assert event.type == "project.updated"
    assert event.payload == project_part(response.json) | {
        "changed": ["name"],
        "member_ids": [alice.user.id, bob.user.id],
    }
    assert event.audience == [alice.user.id, bob.user.id]  # private: its members
    assert event.actor_id == alice.user.id

    public = alice.patch(
        f"/api/v1/projects/{project['id']}",
        json={"visibility": "public"},
        headers={"If-Match": response.headers["ETag"]},
    )
    event = outbox.one()
    assert event.payload["changed"] == ["visibility"] and event.audience is None

    same = alice.patch(
        f"/api/v1/projects/{project['id']}",
        json={"name": "After"},
        headers={"If-Match": public.headers["ETag"]},
    )
    assert same.status_code == 200
    assert same.headers["ETag"] == public.headers["ETag"]  # nothing changed, nothing saved
    assert outbox.new() == []


def test_refused_updates_emit_nothing(alice, bob, made, outbox):
    taken = made(slug="taken")
    project = made()
    assert add(alice, project["id"], bob.user, role="member").status_code == 200
    outbox.new()
    url = f"/api/v1/projects/{project['id']}"
    conflict = alice.patch(url, json={"slug": "taken"}, headers={"If-Match": project["etag"]})
    assert conflict.status_code == 409
    renamed = alice.patch(url, json={"name": "New"}, headers={"If-Match": project["etag"]})
    assert renamed.status_code == 200
    outbox.new()
    stale = alice.patch(url, json={"name": "Lost"}, headers={"If-Match": project["etag"]})
    assert stale.status_code == 412
    assert alice.patch(url, json={"name": "No If-Match"}).status_code == 428
    forbidden = bob.patch(url, json={"name": "Mine"}, headers={"If-Match": renamed.headers["ETag"]})
    assert forbidden.status_code == 403  # a plain member may not change it
    assert outbox.new() == []
    assert taken["slug"] == "taken"


def test_an_update_that_loses_a_race_emits_nothing(app, db, alice, made, outbox):
    """Two writers read version 1; the other one's UPDATE lands first: ours is rolled back."""
    project = db.session.get(Project, made()["id"])
    outbox.new()
    with db.engine.begin() as other_writer:
        other_writer.execute(
            sa.update(Project.__table__)
            .where(Project.__table__.c.id == project.id)
            .values(name="Theirs", version=Project.__table__.c.version + 1)
        )
    actor = Actor(kind="user", id=alice.user.id, scopes=frozenset())
    with pytest.raises(StaleDataError):
        services.update_project(actor, project, {"name": "Ours"})
    db.session.rollback()
    assert outbox.new() == []
    assert db.session.get(Project, project.id).name == "Theirs"


def test_deleting_emits_project_deleted_with_its_members(alice, bob, made, outbox):
    project = made(name="Doomed")
    add(alice, project["id"], bob.user, role="maintainer")
    outbox.new()
    url = f"/api/v1/projects/{project['id']}"
    assert bob.delete(url, headers={"If-Match": project["etag"]}).status_code == 403
    assert alice.delete(url, headers={"If-Match": '"stale"'}).status_code == 412
    assert outbox.new() == []
    assert alice.delete(url, headers={"If-Match": project["etag"]}).status_code == 204
    event = outbox.one()
    assert event.type == "project.deleted"
    assert event.payload == project_part(project) | {"member_ids": [alice.user.id, bob.user.id]}
    assert event.audience == [alice.user.id, bob.user.id]


def test_member_events_carry_the_membership(alice, bob, app, made, outbox):
    project = made(name="Crew")
    outbox.new()
    assert add(alice, project["id"], bob.user, role="member").status_code == 200
    event = outbox.one()
    assert event.type == "project.member_added"
    assert event.payload == {
        "project_id": project["id"],
        "project_name": "Crew",
        "project_slug": project["slug"],
        "user_id": bob.user.id,
        "role": "member",
    }
    assert event.audience == [alice.user.id, bob.user.id]  # the new member sees it too

    assert add(alice, project["id"], bob.user, role="member").status_code == 200
    assert outbox.new() == []  # the same role again changes nothing
    assert add(alice, project["id"], bob.user, role="maintainer").status_code == 200
    event = outbox.one()
    assert event.type == "project.member_updated"
    assert (event.payload["role"], event.payload["previous_role"]) == ("maintainer", "member")

    removed = alice.delete(f"/api/v1/projects/{project['id']}/members/{bob.user.id}")
    assert removed.status_code == 204
    event = outbox.one()
    assert event.type == "project.member_removed"
    assert event.payload["user_id"] == bob.user.id and event.payload["role"] == "maintainer"
    assert event.audience == [alice.user.id, bob.user.id]  # the removed member included
    assert event.actor_id == alice.user.id


def test_refused_member_changes_emit_nothing(app, alice, bob, made, outbox):
    project = made()
    outbox.new()
    members = f"/api/v1/projects/{project['id']}/members"
    nobody = alice.post(members, json={"user_id": "usr_nobody", "role": "member"})
    assert nobody.status_code == 422
    assert bob.post(members, json={"user_id": bob.user.id, "role": "owner"}).status_code == 404
    last_owner = alice.delete(f"{members}/{alice.user.id}")
    assert last_owner.status_code == 409
    assert alice.delete(f"{members}/{bob.user.id}").status_code == 404
    assert outbox.new() == []


def test_operators_changes_are_emitted_as_theirs(runner, db, outbox):
    owner = make_user(runner.app)
    created = runner.invoke(
        args=["projects", "create", "by-ops", "--name", "Ops", "--owner", owner.id]
    )
    assert created.exit_code == 0, created.output
    event = outbox.one()
    assert event.type == "project.created" and event.actor_id.startswith("cli:")
    project_id = created.output.strip().splitlines()[-1]
    assert runner.invoke(args=["projects", "delete", project_id]).exit_code == 0
    event = outbox.one()
    assert event.type == "project.deleted" and event.payload["member_ids"] == [owner.id]
    assert event.actor_id.startswith("cli:")


# --- Members hear of it --------------------------------------------------------------------------


def inbox(client):
    response = client.get("/api/v1/me/notifications")
    assert response.status_code == 200, response.json
    return [(n["title"], n["body"], n["link"]) for n in reversed(response.json["items"])]


def test_hook_notifications_tell_members_what_others_did(app, alice, bob, made, run_jobs):
    carol = signed_in_client(app, make_user(app, display_name="Carol"))
    project = made(name="Ares")
    pid, link = project["id"], f"/api/v1/projects/{project['id']}"
    add(alice, pid, bob.user, role="maintainer")
    add(alice, pid, carol.user, role="member")
    changed = bob.patch(
        f"/api/v1/projects/{pid}",
        json={"description": "Red"},
        headers={"If-Match": project["etag"]},
    )
    assert changed.status_code == 200
    add(alice, pid, carol.user, role="maintainer")
    assert bob.delete(f"/api/v1/projects/{pid}/members/{carol.user.id}").status_code == 204
    assert bob.delete(f"/api/v1/projects/{pid}/members/{bob.user.id}").status_code == 204  # leaves
    assert (
        alice.delete(
            f"/api/v1/projects/{pid}", headers={"If-Match": changed.headers["ETag"]}
        ).status_code
        == 204
    )
    run_jobs()
    # Nobody hears of what they did themselves; Alice, the last member, deleted the project.
    assert inbox(alice) == [("Ares was changed", "Bob changed its description.", link)]
    assert inbox(bob) == [
        (
            "You were added to Ares as maintainer",
            "Alice added you to the project Ares as maintainer.",
            link,
        )
    ]
    assert inbox(carol) == [
        (
            "You were added to Ares as member",
            "Alice added you to the project Ares as member.",
            link,
        ),
        ("Ares was changed", "Bob changed its description.", link),
        (
            "Your role in Ares is now maintainer",
            "Alice changed your role from member to maintainer.",
            link,
        ),
        ("You were removed from Ares", "Bob removed you from the project Ares.", None),
    ]


def test_members_of_a_public_project_are_told_with_links(app, alice, bob, made, run_jobs):
    project = made(name="Open", visibility="public")
    link = f"/api/v1/projects/{project['id']}"
    add(alice, project["id"], bob.user)
    alice.patch(link, json={"name": "Opened"}, headers={"If-Match": project["etag"]})
    alice.delete(f"{link}/members/{bob.user.id}")
    run_jobs()
    assert inbox(bob) == [
        (
            "You were added to Open as member",
            "Alice added you to the project Open as member.",
            link,
        ),
        ("Opened was changed", "Alice changed its name.", link),
        ("You were removed from Opened", "Alice removed you from the project Opened.", link),
    ]


def test_members_of_a_deleted_project_are_told(app, alice, bob, made, run_jobs):
    project = made(name="Hermes")
    add(alice, project["id"], bob.user)
    run_jobs()
    deleted = alice.delete(
        f"/api/v1/projects/{project['id']}", headers={"If-Match": project["etag"]}
    )
    assert deleted.status_code == 204
    run_jobs()
    assert inbox(bob)[-1] == ("Hermes was deleted", "Alice deleted the project Hermes.", None)
    assert inbox(alice) == []


def test_a_member_removed_from_a_private_project_gets_no_link_to_it(
    app, alice, bob, made, run_jobs
):
    project = made(name="Vault")
    add(alice, project["id"], bob.user)
    alice.delete(f"/api/v1/projects/{project['id']}/members/{bob.user.id}")
    run_jobs()
    assert inbox(bob)[-1] == (
        "You were removed from Vault",
        "Alice removed you from the project Vault.",
        None,
    )


def test_the_notifications_fixture_shows_who_was_told_what(
    alice, bob, made, run_jobs, notifications
):
    project = made(name="Kit")
    add(alice, project["id"], bob.user)
    run_jobs()
    told = notifications.one()
    assert (told.user_id, told.event_type, told.title, told.read) == (
        bob.user.id,
        "project.member_added",
        "You were added to Kit as member",
        False,
    )
    assert notifications.all(alice.user) == []
    deleted = alice.delete(
        f"/api/v1/projects/{project['id']}", headers={"If-Match": project["etag"]}
    )
    assert deleted.status_code == 204
    run_jobs()
    assert [(n.user_id, n.event_type) for n in notifications.new()] == [
        (bob.user.id, "project.deleted")
    ]
    [gone] = notifications.all(bob.user.id, type="project.deleted")
    assert gone.title == "Kit was deleted" and gone.link is None
