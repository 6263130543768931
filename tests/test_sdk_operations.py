"""Every operation of the generated SDK, against a live MARS (SQLite and PostgreSQL).

``test_sdk_coverage.py`` runs the tests marked ``mars_sdk_live`` (these, the auth tests and the
plugins' own) with a recorder and fails if an operationId of the OpenAPI document was never
answered with a success.
"""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from mars_sdk import (
    UNSET,
    AuthenticationError,
    BadRequest,
    MarsClient,
    NotFound,
)
from mars_sdk.models import Member
from mars_server.events.models import Job
from mars_server.testing import make_user, run_due_jobs
from tests.mailbox import development_mail as mailbox
from tests.mailbox import link_token
from tests.sdk import PASSWORD

pytest_plugins = ["tests.sdk.fixtures"]
pytestmark = pytest.mark.mars_sdk_live


@pytest.fixture
def app_config():
    return {"WEBHOOKS_ALLOW_PRIVATE": True}


def test_members_and_notifications(app, sdk):
    owner = sdk()
    member_user = make_user(app, display_name="Mia")
    member = sdk(member_user)
    project = owner.projects.create(slug="team", name="Team")

    added = owner.projects.members.add(
        project_id=project.id, user_id=member_user.id, role="maintainer"
    )
    assert isinstance(added, Member) and added.role == "maintainer"
    members = owner.projects.members.list(project_id=project.id)
    assert {(m.user_id, m.role) for m in members} == {
        (owner.user.id, "owner"),
        (member_user.id, "maintainer"),
    }

    run_due_jobs(app)  # project.member_added -> an in-app notification for the new member
    assert member.notifications.count_unread().unread == 1
    [notification] = list(member.notifications.list(unread=True))
    assert notification.event_type == "project.member_added" and notification.read_at is None
    read = member.notifications.mark_read(notification_id=notification.id)
    assert read.id == notification.id and isinstance(read.read_at, datetime)
    assert list(member.notifications.list(unread=True)) == []
    assert member.notifications.mark_all_read().marked == 0

    preferences = member.notifications.preferences.list()
    assert "project.member_added" in {p.event_type for p in preferences}
    changed = member.notifications.preferences.set(
        event_type="project.member_added", in_app=False, email=True
    )
    assert (changed.in_app, changed.email) == (False, True)

    member.projects.members.remove(project_id=project.id, user_id=member_user.id)
    with pytest.raises(NotFound):  # a private project, no longer hers
        member.projects.get(project_id=project.id)


def test_me_tokens_and_password(live_server, sdk):
    client = sdk()
    me = client.me.get()
    assert me.id == client.user.id and me.email == client.user.email
    renamed = client.me.update(if_match=me, display_name="Renamed")
    assert renamed.display_name == "Renamed"

    new = client.me.tokens.create(name="ci", scopes=["account:read"], expires_in_days=7)
    assert new.token.startswith("mars_pat_") and new.scopes == ["account:read"]
    with MarsClient(live_server, token=new.token) as ci:
        assert ci.me.get().id == me.id
        assert {t.name for t in client.me.tokens.list()} >= {"ci", "test"}
        assert client.me.tokens.get(token_id=new.id).hint == new.hint
        client.me.tokens.revoke(token_id=new.id)
        with pytest.raises(AuthenticationError):
            ci.me.get()

    client.me.change_password(current_password=PASSWORD, new_password="another good phrase 42")
    with pytest.raises(AuthenticationError):  # every token of the user is revoked
        client.me.get()


def test_my_data_export_and_account_deletion(app, sdk):
    client = sdk()
    asked = client.me.export_data()
    assert asked.status == "pending" and asked.kind == "account.export"
    run_due_jobs(app)
    done = client.wait(asked, timeout=10)
    assert done.status == "succeeded" and done.result.startswith("/api/v1/me/exports/")
    export_id = done.result.rsplit("/", 1)[1]
    ready = client.me.exports.get(export_id=export_id)
    assert ready.status == "ready" and ready.size > 0 and ready.expires_at is not None
    assert [e.id for e in client.me.exports.list()] == [export_id]
    assert "accounts/export?token=" in mailbox(app)[-1].as_string()

    scheduled = client.me.delete(password=PASSWORD)
    assert scheduled.deletion_due_at > datetime.now(scheduled.deletion_due_at.tzinfo)
    with pytest.raises(AuthenticationError):  # every token is revoked at once
        client.me.get()


def test_apps(sdk):
    client = sdk()
    created = client.apps.create(
        name="Rover dashboard",
        client_type="confidential",
        redirect_uris=["https://rover.example/callback"],
        scopes=["account:read"],
        grant_types=["authorization_code", "refresh_token"],
    )
    assert created.client_secret and created.client_id.startswith("mars_app_")
    assert [a.id for a in client.apps.list()] == [created.id]
    app = client.apps.get(app_id=created.id)
    assert app.name == "Rover dashboard" and not hasattr(app, "client_secret")
    changed = client.apps.update(app_id=app.id, if_match=app, name="Rover")
    assert changed.name == "Rover"
    rotated = client.apps.rotate_secret(app_id=app.id)
    assert rotated.client_secret not in (None, created.client_secret)
    assert isinstance(rotated.previous_secret_expires_at, datetime)
    client.apps.delete(app_id=app.id, if_match=client.apps.get(app_id=app.id))
    assert client.apps.list() == []


def test_webhooks_and_their_deliveries(app, sdk, receiver):
    client = sdk()
    endpoint = client.webhooks.create(
        url=receiver.url(), events=["project.created"], description="CI"
    )
    assert endpoint.secret.startswith("whsec_") and endpoint.disabled_reason is None
    assert [w.id for w in client.webhooks.list()] == [endpoint.id]
    fetched = client.webhooks.get(webhook_id=endpoint.id)
    assert fetched.description == "CI" and fetched.failing_since is None
    changed = client.webhooks.update(
        webhook_id=endpoint.id, if_match=fetched, events=["project.created", "project.deleted"]
    )
    assert changed.events == ["project.created", "project.deleted"]

    client.projects.create(slug="hooked", name="Hooked")
    run_due_jobs(app)
    [request] = receiver.wait_for(1)
    [delivery] = list(client.webhooks.deliveries.list(webhook_id=endpoint.id))
    assert delivery.id == request.headers["webhook-id"] and delivery.status == "succeeded"
    assert list(client.webhooks.deliveries.list(webhook_id=endpoint.id, status="failed")) == []
    detail = client.webhooks.deliveries.get(webhook_id=endpoint.id, delivery_id=delivery.id)
    assert detail.body["type"] == "project.created" and len(detail.attempts) == 1
    assert detail.attempts[0].response_status == 200

    again = client.webhooks.deliveries.redeliver(endpoint.id, delivery.id)
    assert again.id == delivery.id and again.status == "pending" and again.operation_id
    run_due_jobs(app)
    assert [r.headers["webhook-id"] for r in receiver.wait_for(2)] == [delivery.id] * 2
    done = client.wait(again.operation_id, timeout=10)  # the redelivery's operation
    assert done.result == f"/api/v1/webhooks/{endpoint.id}/deliveries/{delivery.id}"

    rotated = client.webhooks.rotate_secret(webhook_id=endpoint.id)
    assert rotated.secret != endpoint.secret and rotated.previous_secret_expires_at
    client.webhooks.delete(
        webhook_id=endpoint.id, if_match=client.webhooks.get(webhook_id=endpoint.id)
    )
    assert list(client.webhooks.list()) == []


def test_accounts_register_verify_and_reset(app, sdk):
    anonymous = sdk(anonymous=True)
    accepted = anonymous.accounts.register(email="new@example.test", password=PASSWORD)
    assert accepted.detail
    [first] = mailbox(app)
    # A new link for an account still waiting: the first one stops working.
    assert anonymous.accounts.resend_verification(email="new@example.test").detail
    welcome = mailbox(app)[-1]
    assert link_token(welcome) != link_token(first)
    with pytest.raises(BadRequest):
        anonymous.accounts.verify_email(token=link_token(first))
    anonymous.accounts.verify_email(token=link_token(welcome))
    with pytest.raises(BadRequest):  # a link works once
        anonymous.accounts.verify_email(token=link_token(welcome))
    anonymous.accounts.request_password_reset(email="new@example.test")
    reset = mailbox(app)[-1]
    assert link_token(reset) != link_token(welcome)
    anonymous.accounts.reset_password(token=link_token(reset), password="a brand new phrase")
    with pytest.raises(BadRequest):
        anonymous.accounts.reset_password(token=link_token(reset), password="yet another one")


def test_admin_users_audit_and_jobs(app, db, sdk, admin):
    client = sdk(admin)
    someone = make_user(app, display_name="Someone")
    users = list(client.users.list(limit=1))
    assert {someone.id, admin.id} <= {u.id for u in users}
    assert client.users.get(user_id=someone.id).display_name == "Someone"
    granted = client.users.roles.grant(user_id=someone.id, role="admin")
    assert "admin" in granted.roles
    revoked = client.users.roles.revoke(user_id=someone.id, role="admin")
    assert "admin" not in revoked.roles

    client.projects.create(slug="audited", name="Audited")
    records = list(client.audit.list(action="project.*"))
    assert [r.action for r in records] == ["project.created"]
    record = client.audit.get(record_id=records[0].id)
    assert record.actor_id == admin.id and record.request_id

    run_due_jobs(app)
    jobs = list(client.jobs.list(status="succeeded"))
    assert jobs and client.jobs.get(job_id=jobs[0].id).status == "succeeded"
    db.session.execute(sa.update(Job).where(Job.id == jobs[0].id).values(status="dead"))
    db.session.commit()
    assert client.jobs.retry(job_id=jobs[0].id).status == "queued"


def test_meta(sdk):
    client = sdk()
    meta = client.meta.get()
    assert meta.api_version == "v1" and meta.version
    index = client.meta.get_api_index()
    assert index.links["openapi"] == "/api/v1/openapi.json" and index.version == meta.version
    plugins = {p.name: p for p in client.meta.list_plugins()}
    assert plugins["projects"].state == "enabled"
    assert client.meta.get().name is not UNSET
