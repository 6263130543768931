"""Retention (docs/privacy.md#retention): each kind of record goes when its time is up, by a
scheduled job, and the metrics count what went."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import time_machine

from mars_server.auth.models import EmailToken, OAuthToken, PersonalAccessToken
from mars_server.db import utcnow
from mars_server.events import enqueue
from mars_server.models import IdempotencyKey
from mars_server.state import mars_state
from mars_server.testing import run_due_jobs
from tests.test_metrics import TOKEN, scrape, value

PURGED = "mars_retention_purged_total"


@pytest.fixture
def app_config():
    return {"METRICS_TOKEN": TOKEN}


def run_task(app, task: str) -> None:
    with app.app_context():
        from mars_server.db import db

        enqueue(task)
        db.session.commit()
    run_due_jobs(app)


def test_every_purge_runs_on_a_schedule(app):
    with app.app_context():
        schedules = {s.task for s in mars_state().plugins.schedules().values()}
    assert {
        "events.purge",
        "webhooks.purge",
        "notifications.purge",
        "auth.privacy",
        "auth.purge_throttles",
        "ops.purge_idempotency",
    } <= schedules


def test_notifications_go_after_their_retention(app, db, create_user, token_for):
    owner, member = create_user(), create_user()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token_for(owner)}"}
    project = client.post(
        "/api/v1/projects", json={"slug": "kept", "name": "Kept"}, headers=headers
    )
    client.post(
        f"/api/v1/projects/{project.json['id']}/members",
        json={"user_id": member.id, "role": "member"},
        headers=headers,
    )
    run_due_jobs(app)
    count = sa.text("SELECT count(*) FROM notifications WHERE user_id = :u")
    with app.app_context():
        assert db.session.scalar(count, {"u": member.id}) == 1
    before = scrape(app)
    run_task(app, "notifications.purge")  # too young
    with app.app_context():
        assert db.session.scalar(count, {"u": member.id}) == 1
    with time_machine.travel(utcnow() + dt.timedelta(days=366)):
        run_task(app, "notifications.purge")
    with app.app_context():
        assert db.session.scalar(count, {"u": member.id}) == 0
    assert (
        value(scrape(app), PURGED, what="notifications")
        - value(before, PURGED, what="notifications")
        == 1
    )


def test_ended_credentials_go_after_their_retention(app, db, create_user, token_for):
    user = create_user()
    token_for(user, ["account:read"], name="live")
    token_for(user, ["account:read"], name="revoked")
    with app.app_context():
        db.session.execute(
            sa.update(PersonalAccessToken)
            .where(PersonalAccessToken.name == "revoked")
            .values(revoked_at=utcnow())
        )
        db.session.commit()
    before = scrape(app)
    with time_machine.travel(utcnow() + dt.timedelta(days=91)):
        run_task(app, "auth.privacy")
    with app.app_context():
        names = set(
            db.session.scalars(
                sa.select(PersonalAccessToken.name).where(PersonalAccessToken.user_id == user.id)
            )
        )
        assert names == {"live"}  # expires in 90 days by default: ended 1 day ago, kept
        assert db.session.scalar(sa.select(sa.func.count()).select_from(EmailToken)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OAuthToken)) == 0
    after = scrape(app)
    assert (
        value(after, PURGED, what="personal_access_tokens")
        - value(before, PURGED, what="personal_access_tokens")
        == 1
    )


def test_idempotency_records_go_when_they_expire(app, db, create_user, token_for):
    headers = {"Authorization": f"Bearer {token_for(create_user())}"}
    client = app.test_client()
    body = {"slug": "once", "name": "Once"}
    with time_machine.travel(utcnow() - dt.timedelta(days=2)):
        response = client.post(
            "/api/v1/projects", json=body, headers=headers | {"Idempotency-Key": "old"}
        )
        assert response.status_code == 201
    before = scrape(app)
    run_task(app, "ops.purge_idempotency")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(IdempotencyKey)) == 0
    assert (
        value(scrape(app), PURGED, what="idempotency_records")
        - value(before, PURGED, what="idempotency_records")
        == 1
    )


def test_events_and_jobs_are_counted_when_purged(app, db, create_user, token_for):
    headers = {"Authorization": f"Bearer {token_for(create_user())}"}
    app.test_client().post("/api/v1/projects", json={"slug": "ev", "name": "Ev"}, headers=headers)
    run_due_jobs(app)
    before = scrape(app)
    with time_machine.travel(utcnow() + dt.timedelta(days=31)):
        run_task(app, "events.purge")
    after = scrape(app)
    assert value(after, PURGED, what="events") - value(before, PURGED, what="events") >= 1
    assert value(after, PURGED, what="jobs") - value(before, PURGED, what="jobs") >= 1
