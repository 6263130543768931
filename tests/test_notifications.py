"""In-app and e-mail notifications: from a change to a user's inbox, as that user sees it."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mars_server.db import db as mars_db
from mars_server.events import Event, emit
from mars_server.events.models import OutboxEvent
from mars_server.notifications.models import Notification
from mars_server.testing import make_token, make_user, run_due_jobs, signed_in_client
from tests import fakes

PUBLIC_URL = "https://mars.example.test"


@pytest.fixture
def app_config():
    return {"PUBLIC_URL": PUBLIC_URL}


@pytest.fixture
def ada(app):
    """The user who makes the changes."""
    return signed_in_client(app, make_user(app, display_name="Ada Lovelace"))


@pytest.fixture
def bob(app):
    """The user who hears of them."""
    return signed_in_client(app, make_user(app, display_name="Bob Babbage"))


@pytest.fixture
def project(ada):
    """``project(**fields)``: a project of Ada's, made through the API."""
    numbers = iter(range(1_000))

    def create(**fields):
        n = next(numbers)
        body = {"slug": f"project-{n}", "name": f"Project {n}"} | fields
        response = ada.post("/api/v1/projects", json=body)
        assert response.status_code == 201, response.json
        return response.json | {"etag": response.headers["ETag"]}

    return create


def add_member(client, project_id, user, role="maintainer"):
    response = client.post(
        f"/api/v1/projects/{project_id}/members", json={"user_id": user.id, "role": role}
    )
    assert response.status_code == 200, response.json
    return response


def inbox(client, **query):
    response = client.get("/api/v1/me/notifications", query_string=query)
    assert response.status_code == 200, response.json
    return response.json["items"]


def unread(client):
    response = client.get("/api/v1/me/notifications/unread-count")
    assert response.status_code == 200
    return response.json["unread"]


def mailbox(app):
    folder = Path(app.config["MARS"]["INSTANCE_PATH"], "mail")
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted(folder.glob("*.eml"))
    ]


def set_channels(client, event_type, *, in_app, email):
    response = client.put(
        f"/api/v1/me/notification-preferences/{event_type}",
        json={"in_app": in_app, "email": email},
    )
    assert response.status_code == 200, response.json
    return response.json


# --- The inbox -----------------------------------------------------------------------------------


def test_an_added_member_is_notified_and_marks_it_read(app, ada, bob, project, run_jobs):
    made = project(name="Apollo")
    add_member(ada, made["id"], bob.user)
    assert inbox(bob) == []  # nothing until the worker has run
    run_jobs()
    [notification] = inbox(bob)
    assert notification["title"] == "You were added to Apollo as maintainer"
    assert notification["body"] == "Ada Lovelace added you to the project Apollo as maintainer."
    assert notification["link"] == f"/api/v1/projects/{made['id']}"
    assert notification["event_type"] == "project.member_added"
    assert notification["id"].startswith("ntf_") and notification["event_id"].startswith("evt_")
    assert notification["read_at"] is None and notification["created_at"]
    assert unread(bob) == 1
    assert inbox(bob, unread="true") == [notification]
    assert inbox(bob, unread="false") == []

    marked = bob.post(f"/api/v1/me/notifications/{notification['id']}/read")
    assert marked.status_code == 200
    assert marked.json["id"] == notification["id"] and marked.json["read_at"]
    assert unread(bob) == 0
    assert inbox(bob, unread="true") == []
    assert [n["id"] for n in inbox(bob, unread="false")] == [notification["id"]]
    again = bob.post(f"/api/v1/me/notifications/{notification['id']}/read")
    assert again.json["read_at"] == marked.json["read_at"]  # first read time kept
    assert inbox(bob) == [marked.json]


def test_read_all_marks_every_unread_notification(ada, bob, project, run_jobs):
    for _ in range(3):
        add_member(ada, project()["id"], bob.user)
    run_jobs()
    assert unread(bob) == 3
    first = inbox(bob)[0]["id"]
    bob.post(f"/api/v1/me/notifications/{first}/read")
    response = bob.post("/api/v1/me/notifications/read-all")
    assert response.status_code == 200
    assert response.json == {"marked": 2}
    assert unread(bob) == 0
    assert all(n["read_at"] for n in inbox(bob))
    assert bob.post("/api/v1/me/notifications/read-all").json == {"marked": 0}


def test_the_inbox_is_paged_newest_first(ada, bob, project, run_jobs):
    for _ in range(5):
        add_member(ada, project()["id"], bob.user)
    run_jobs()
    everything = [n["id"] for n in inbox(bob)]
    assert len(everything) == 5 and everything == sorted(everything, reverse=True)
    seen, url, pages = [], "/api/v1/me/notifications?limit=2", 0
    while url:
        response = bob.get(url)
        assert response.status_code == 200
        seen += [n["id"] for n in response.json["items"]]
        pages += 1
        url = response.headers.get("Link", "").partition("<")[2].partition(">")[0]
        url = url.replace("http://localhost", "")
    assert seen == everything and pages == 3
    assert response.json["next_cursor"] is None

    cursor = bob.get("/api/v1/me/notifications?limit=2").json["next_cursor"]
    other_list = bob.get(
        "/api/v1/me/notifications", query_string={"cursor": cursor, "unread": "true"}
    )
    assert other_list.status_code == 400
    assert other_list.headers["Content-Type"] == "application/problem+json"
    tampered = bob.get("/api/v1/me/notifications", query_string={"cursor": cursor[:-2] + "xx"})
    assert tampered.status_code == 400
    assert bob.get("/api/v1/me/notifications?limit=201").status_code == 422


def test_another_users_notification_is_not_found(app, ada, bob, project, run_jobs):
    add_member(ada, project()["id"], bob.user)
    run_jobs()
    [mine] = inbox(bob)
    eve = signed_in_client(app)
    for response in (
        eve.post(f"/api/v1/me/notifications/{mine['id']}/read"),
        bob.post("/api/v1/me/notifications/ntf_nonexistent/read"),
    ):
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/problem+json"
    assert inbox(eve) == []
    assert eve.post("/api/v1/me/notifications/read-all").json == {"marked": 0}
    assert unread(bob) == 1  # Eve's attempts changed nothing of Bob's


def test_scopes_are_enforced(app, ada, bob, project, run_jobs):
    add_member(ada, project()["id"], bob.user)
    run_jobs()
    [mine] = inbox(bob)
    anonymous = app.test_client()
    assert anonymous.get("/api/v1/me/notifications").status_code == 401
    assert anonymous.get("/api/v1/me/notifications/unread-count").status_code == 401
    reader = {"Authorization": f"Bearer {make_token(app, bob.user, ['notifications:read'])}"}
    client = app.test_client()
    assert client.get("/api/v1/me/notifications", headers=reader).status_code == 200
    assert client.get("/api/v1/me/notification-preferences", headers=reader).status_code == 200
    for response in (
        client.post(f"/api/v1/me/notifications/{mine['id']}/read", headers=reader),
        client.post("/api/v1/me/notifications/read-all", headers=reader),
        client.put(
            "/api/v1/me/notification-preferences/project.updated",
            json={"in_app": False, "email": False},
            headers=reader,
        ),
    ):
        assert response.status_code == 403
        assert response.json["scope"] == "notifications:write"
    other = {"Authorization": f"Bearer {make_token(app, bob.user, ['projects:read'])}"}
    assert client.get("/api/v1/me/notifications", headers=other).status_code == 403
    assert unread(bob) == 1


def test_the_me_routes_of_accounts_still_answer(bob):
    """Both plugins mount under /api/v1/me; neither hides the other's paths."""
    assert bob.get("/api/v1/me").json["id"] == bob.user.id
    assert bob.get("/api/v1/me/tokens").status_code == 200
    spec = bob.get("/api/v1/openapi.json").json
    assert {
        "/api/v1/me/notifications",
        "/api/v1/me/notifications/unread-count",
        "/api/v1/me/notifications/read-all",
        "/api/v1/me/notifications/{notification_id}/read",
        "/api/v1/me/notification-preferences/{event_type}",
    } <= set(spec["paths"])
    assert spec["paths"]["/api/v1/me/notifications"]["get"]["tags"] == ["notifications"]


# --- Who is told ---------------------------------------------------------------------------------


def test_the_actor_is_never_notified(ada, bob, project, run_jobs):
    made = project(name="Gemini")
    add_member(ada, made["id"], bob.user)
    changed = ada.patch(
        f"/api/v1/projects/{made['id']}",
        json={"name": "Gemini 2"},
        headers={"If-Match": made["etag"]},
    )
    assert changed.status_code == 200
    add_member(ada, made["id"], bob.user, role="owner")
    assert ada.delete(f"/api/v1/projects/{made['id']}/members/{ada.user.id}").status_code == 204
    run_jobs()
    assert inbox(ada) == []  # Ada changed, promoted and left: she did it all herself
    assert [n["title"] for n in inbox(bob)] == [
        "Your role in Gemini 2 is now owner",
        "Gemini 2 was changed",
        "You were added to Gemini as maintainer",
    ]
    # Bob, the last member, deletes the project: nobody else is left to tell.
    deleted = bob.delete(
        f"/api/v1/projects/{made['id']}", headers={"If-Match": changed.headers["ETag"]}
    )
    assert deleted.status_code == 204
    run_jobs()
    assert len(inbox(bob)) == 3 and inbox(ada) == []


def test_a_user_who_cannot_see_a_private_project_hears_nothing_of_it(
    app, ada, bob, project, run_jobs
):
    made = project(name="Secret", visibility="private")
    add_member(ada, made["id"], bob.user)
    carol = signed_in_client(app, make_user(app, display_name="Carol"))
    renamed = ada.patch(
        f"/api/v1/projects/{made['id']}",
        json={"name": "Hidden"},
        headers={"If-Match": made["etag"]},
    )
    assert renamed.status_code == 200
    # Carol joins after the rename, before the worker runs: she was not in its audience.
    add_member(ada, made["id"], carol.user, role="member")
    run_jobs()
    assert [n["title"] for n in inbox(bob)] == [
        "Hidden was changed",
        "You were added to Secret as maintainer",
    ]
    assert [n["title"] for n in inbox(carol)] == ["You were added to Hidden as member"]


def test_drafts_for_users_outside_the_audience_are_dropped(install_plugins, make_app):
    install_plugins(eventful="events")
    app = make_app()
    with app.app_context():
        outsider = make_user(app)
        insider = make_user(app)
        emit(
            "thing.happened",
            {"id": "thg_1", "name": "Hidden", "owner_id": outsider.id},
            audience=[insider.id],
        )
        emit(
            "thing.happened",
            {"id": "thg_2", "name": "Shown", "owner_id": insider.id},
            audience=[insider.id],
        )
        mars_db.session.commit()
        run_due_jobs(app)
        owners = mars_db.session.execute(sa.select(Notification.user_id, Notification.title)).all()
        assert owners == [(insider.id, "Shown happened")]
    fakes.events.reset()


def test_inactive_users_are_not_notified(app, ada, bob, project, run_jobs):
    from mars_server.auth.models import User

    made = project()
    add_member(ada, made["id"], bob.user)
    mars_db.session.execute(sa.update(User).where(User.id == bob.user.id).values(status="disabled"))
    mars_db.session.commit()
    run_jobs()
    assert mars_db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 0


# --- Preferences and e-mail ----------------------------------------------------------------------


def test_preferences_list_every_event_type_with_defaults(app, bob):
    response = bob.get("/api/v1/me/notification-preferences")
    assert response.status_code == 200
    items = {item["event_type"]: item for item in response.json["items"]}
    assert set(items) == set(app.extensions["mars"].event_types)
    assert items["project.member_added"] == {
        "event_type": "project.member_added",
        "description": "A user was added to a project.",
        "in_app": True,
        "email": False,
    }
    chosen = set_channels(bob, "project.updated", in_app=False, email=True)
    assert chosen == {
        "event_type": "project.updated",
        "description": app.extensions["mars"].event_types["project.updated"].description,
        "in_app": False,
        "email": True,
    }
    items = {
        i["event_type"]: i for i in bob.get("/api/v1/me/notification-preferences").json["items"]
    }
    assert (items["project.updated"]["in_app"], items["project.updated"]["email"]) == (False, True)
    assert items["project.member_added"]["in_app"] is True
    set_channels(bob, "project.updated", in_app=False, email=True)  # no change: not logged
    from mars_server.audit.models import AuditRecord

    [logged] = mars_db.session.scalars(
        sa.select(AuditRecord).where(AuditRecord.action == "notifications.preference_changed")
    ).all()
    assert (logged.actor_id, logged.target) == (bob.user.id, bob.user.id)
    assert logged.details == {"event_type": "project.updated", "in_app": False, "email": True}


def test_bad_preference_requests_are_refused(bob):
    unknown = bob.put(
        "/api/v1/me/notification-preferences/project.exploded",
        json={"in_app": True, "email": False},
    )
    assert unknown.status_code == 404
    assert unknown.headers["Content-Type"] == "application/problem+json"
    for body in (
        {"in_app": True},
        {"in_app": True, "email": False, "sms": True},
        {"in_app": "maybe", "email": False},
    ):
        response = bob.put("/api/v1/me/notification-preferences/project.updated", json=body)
        assert response.status_code == 422, body
    items = bob.get("/api/v1/me/notification-preferences").json["items"]
    assert all(i["in_app"] and not i["email"] for i in items)  # nothing was stored


def test_with_every_channel_off_nothing_arrives(app, ada, bob, project, run_jobs):
    set_channels(bob, "project.member_added", in_app=False, email=False)
    add_member(ada, project()["id"], bob.user)
    run_jobs()
    assert inbox(bob) == [] and unread(bob) == 0
    assert mailbox(app) == []
    # Other event types keep their defaults.
    made = project(name="Still told")
    add_member(ada, made["id"], bob.user)
    ada.patch(
        f"/api/v1/projects/{made['id']}",
        json={"description": "new"},
        headers={"If-Match": made["etag"]},
    )
    run_jobs()
    assert [n["event_type"] for n in inbox(bob)] == ["project.updated"]


def test_email_on_sends_the_notification_by_mail(app, ada, bob, project, run_jobs):
    set_channels(bob, "project.member_added", in_app=False, email=True)
    made = project(name="R&D <lab>")
    add_member(ada, made["id"], bob.user)
    run_jobs()  # the handler, which queues the mail job
    run_jobs()  # whatever is still due: nothing is sent twice
    [message] = mailbox(app)
    assert message["To"].addresses[0].addr_spec == bob.user.email
    assert message["To"].addresses[0].display_name == "Bob Babbage"
    assert message["Subject"] == "You were added to R&D <lab> as maintainer"
    link = f"{PUBLIC_URL}/api/v1/projects/{made['id']}"
    text = message.get_body(("plain",)).get_content()
    assert "Hello Bob Babbage," in text
    assert "Ada Lovelace added you to the project R&D <lab> as maintainer." in text
    assert f"\n{link}\n" in text
    assert "PUT /api/v1/me/notification-preferences/project.member_added" in text
    html = message.get_body(("html",)).get_content()
    assert f'href="{link}"' in html
    assert "R&amp;D &lt;lab&gt;" in html and "<lab>" not in html
    assert inbox(bob) == []  # in-app was turned off


def test_default_email_setting_mails_users_who_chose_nothing(make_app):
    app = make_app(PLUGINS={"notifications": {"default_email": True}})
    ada = signed_in_client(app, make_user(app, display_name="Ada"))
    bob = signed_in_client(app, make_user(app, display_name="Bob"))
    made = ada.post("/api/v1/projects", json={"slug": "mailed", "name": "Mailed"}).json
    add_member(ada, made["id"], bob.user)
    run_due_jobs(app)
    [message] = mailbox(app)
    assert message["Subject"] == "You were added to Mailed as maintainer"
    # Without a public URL the link is shown as the API path it is.
    assert f"/api/v1/projects/{made['id']}" in message.get_body(("plain",)).get_content()
    assert len(inbox(bob)) == 1
    assert set_channels(bob, "project.updated", in_app=True, email=False)["email"] is False


# --- At least once, exactly one notification -----------------------------------------------------


def test_running_the_handler_again_adds_no_duplicate(app, ada, bob, project, run_jobs):
    set_channels(bob, "project.member_added", in_app=True, email=True)
    add_member(ada, project()["id"], bob.user)
    run_jobs()
    assert len(inbox(bob)) == 1 and len(mailbox(app)) == 1
    row = mars_db.session.scalar(
        sa.select(OutboxEvent).where(OutboxEvent.type == "project.member_added")
    )
    handler = app.extensions["mars"].event_handlers["notifications.from_event"]
    handler.handle(Event.from_row(row))  # as a worker would after losing its lease
    mars_db.session.commit()
    run_jobs()
    assert len(inbox(bob)) == 1 and len(mailbox(app)) == 1
    # The database itself refuses a second notification of one event for one user.
    mars_db.session.add(
        Notification(user_id=bob.user.id, event_id=row.id, event_type=row.type, title="again")
    )
    with pytest.raises(IntegrityError):
        mars_db.session.commit()
    mars_db.session.rollback()


def test_a_handler_run_that_failed_leaves_nothing_and_the_retry_notifies_once(
    app, ada, bob, project, run_jobs, monkeypatch
):
    from mars_server.notifications import handlers

    set_channels(bob, "project.member_added", in_app=True, email=True)
    add_member(ada, project()["id"], bob.user)
    real_mail = handlers._mail

    def mail_then_crash(*args, **kwargs):
        real_mail(*args, **kwargs)
        raise RuntimeError("the worker died after queueing the mail")

    monkeypatch.setattr(handlers, "_mail", mail_then_crash)
    run_jobs()
    assert inbox(bob) == [] and mailbox(app) == []  # rolled back: no row, no mail job
    monkeypatch.setattr(handlers, "_mail", real_mail)
    mars_db.session.execute(sa.text("UPDATE mars_jobs SET run_at = created_at"))
    mars_db.session.commit()
    run_jobs()
    assert len(inbox(bob)) == 1 and len(mailbox(app)) == 1
