"""Personal data across every plugin: the inventory, a person's export, their account's
deletion and erasure, and the audit chain that stays verifiable after it (docs/privacy.md)."""

from __future__ import annotations

import datetime as dt
import io
import json
import secrets
import zipfile

import pytest
import sqlalchemy as sa
import time_machine

from mars_server import privacy
from mars_server.audit import chain
from mars_server.audit.models import AuditRecord
from mars_server.auth import accounts, signin
from mars_server.auth import privacy as auth_privacy
from mars_server.auth import secrets as auth_secrets
from mars_server.auth.models import (
    AuthorizationCode,
    DataExport,
    OAuthClient,
    OAuthToken,
    PersonalAccessToken,
    User,
)
from mars_server.db import utcnow
from mars_server.state import mars_state
from mars_server.testing import make_user, run_due_jobs
from tests.mailbox import text_links
from tests.test_account_pages import Form
from tests.test_idempotency_secrets import database_dump

PASSWORD = "correct horse battery staple"
EMAIL = "ada.erasable@example.test"
NAME = "Ada Erasable-Lovelace"
EVERY_SCOPE = [
    "account:read",
    "account:write",
    "apps:write",
    "projects:read",
    "projects:write",
    "tasks:read",
    "tasks:write",
    "webhooks:write",
]


@pytest.fixture
def app_config():
    return {"WEBHOOKS_ALLOW_PRIVATE": True}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ok(response, status=201):
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json


class Person:
    """A person with data in every plugin, and Bo, who shares a project with them."""

    def __init__(self, app, db, token_for):
        self.app = app
        client = self.client = app.test_client()
        # Registered through the API: the audit log holds the address it was made with.
        ok(
            client.post(
                "/api/v1/accounts",
                json={"email": EMAIL, "password": PASSWORD, "display_name": NAME},
                environ_base={"REMOTE_ADDR": "203.0.113.77"},
            ),
            202,
        )
        with app.app_context():
            user = accounts.find_user(EMAIL)
            accounts.set_status(user, "active")
            db.session.refresh(user)
            self.id, self.user = user.id, user
        self.token = token_for(self.user, EVERY_SCOPE, name="Ada's laptop")
        self.bo = make_user(app, email="bo@example.test", display_name="Bo Keeper")
        self.bo_token = token_for(self.bo, EVERY_SCOPE)
        me = bearer(self.token)
        self.solo = ok(
            client.post("/api/v1/projects", json={"slug": "solo", "name": "Solo"}, headers=me)
        )
        ok(
            client.post(
                f"/api/v1/projects/{self.solo['id']}/tasks", json={"name": "a task"}, headers=me
            )
        )
        self.shared = ok(
            client.post("/api/v1/projects", json={"slug": "shared", "name": "Shared"}, headers=me)
        )
        # Ada adds Bo: Bo's notification names Ada; both own the project.
        ok(
            client.post(
                f"/api/v1/projects/{self.shared['id']}/members",
                json={"user_id": self.bo.id, "role": "owner"},
                headers=me,
            ),
            200,
        )
        self.bos = ok(
            client.post(
                "/api/v1/projects",
                json={"slug": "bos", "name": "Bo's"},
                headers=bearer(self.bo_token),
            )
        )
        ok(
            client.post(
                f"/api/v1/projects/{self.bos['id']}/members",
                json={"user_id": self.id, "role": "member"},
                headers=bearer(self.bo_token),
            ),
            200,
        )
        ok(
            client.post(
                f"/api/v1/projects/{self.bos['id']}/tasks", json={"name": "Ada's idea"}, headers=me
            )
        )
        self.hook = ok(
            client.post(
                "/api/v1/webhooks",
                json={"url": "https://hooks.example.com/ada", "events": ["project.updated"]},
                headers=me,
            )
        )
        self.app_ = ok(
            client.post(
                "/api/v1/apps",
                json={
                    "name": "Ada's app",
                    "client_type": "public",
                    "redirect_uris": ["https://ada.example.com/cb"],
                    "scopes": ["account:read"],
                    "grant_types": ["authorization_code"],
                },
                headers=me,
            )
        )
        with app.app_context():
            db.session.execute(
                sa.text(
                    "INSERT INTO sso_identities (id, provider, subject, user_id, email, "
                    "created_at) VALUES (:id, 'corp', 'ada-at-corp', :user, :email, :now)"
                ),
                {"id": "sso_ada", "user": self.id, "email": EMAIL, "now": utcnow()},
            )
            self.hint = db.session.scalar(
                sa.select(PersonalAccessToken.hint).where(PersonalAccessToken.user_id == self.id)
            )
            db.session.commit()
        run_due_jobs(app)  # notifications, deliveries


@pytest.fixture
def person(app, db, token_for):
    return Person(app, db, token_for)


def seal_and_verify(app) -> str:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["audit", "seal"]).exit_code == 0
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    return result.output


# --- Which plugins must answer, and the inventory -----------------------------------------------


def test_every_plugin_that_stores_users_ids_exports_and_erases_them(app):
    with app.app_context():
        plugins = mars_state().plugins
        assert privacy.missing_hooks(plugins) == []
        holders = privacy.user_tables_by_plugin(plugins)
    assert {
        "auth",
        "audit",
        "events",
        "notifications",
        "webhooks",
        "projects",
        "tasks",
        "sso",
    } <= set(holders)
    assert "project_members.user_id" in holders["projects"]
    assert "auth_personal_access_tokens.user_id" in holders["auth"]


def test_a_plugin_that_stores_users_ids_without_the_hooks_is_named(app, monkeypatch):
    with app.app_context():
        plugins = mars_state().plugins
        real = plugins.implementers
        monkeypatch.setattr(
            plugins,
            "implementers",
            lambda hook: (
                real(hook) - {"tasks"} if hook == "mars_personal_data_erase" else real(hook)
            ),
        )
        (problem,) = privacy.missing_hooks(plugins)
    assert problem == (
        "plugin 'tasks' stores users' ids (tasks.created_by) but does not implement "
        "mars_personal_data_erase"
    )
    result = app.test_cli_runner().invoke(args=["privacy", "check"])
    assert result.exit_code == 1 and "plugin 'tasks'" in result.output


def test_hook_mars_personal_data_inventory(app):
    result = app.test_cli_runner().invoke(args=["privacy", "inventory"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("# Personal data stored by MARS")
    for plugin in ("auth", "audit", "events", "notifications", "webhooks", "projects", "sso"):
        assert f"\n## {plugin}\n" in text
    assert "| data | where | why | kept | on erasure |" in text
    assert "auth_users, auth_user_roles" in text
    assert "MARS_EVENTS_RETENTION_DAYS" in text
    assert "\n## ops\n\nNo personal data.\n" not in text  # only plugins that answer are listed


# --- Export ---------------------------------------------------------------------------------------


@pytest.fixture
def mail_app(smtp_app):
    return smtp_app(WEBHOOKS_ALLOW_PRIVATE=True)


def test_hook_mars_personal_data_export(mail_app, notifications):
    app, inbox = mail_app
    from mars_server.db import db
    from mars_server.testing import make_token

    ada = Person(app, db, lambda user, scopes, **kw: make_token(app, user, scopes, **kw))
    client = app.test_client()
    asked = client.post("/api/v1/me/export", headers=bearer(ada.token))
    operation = ok(asked, 202)  # a long-running operation
    assert operation["status"] == "pending" and operation["kind"] == "account.export"
    assert asked.headers["Location"] == f"/api/v1/operations/{operation['id']}"
    # Asking again while it is made gives the same one.
    assert (
        ok(client.post("/api/v1/me/export", headers=bearer(ada.token)), 202)["id"]
        == operation["id"]
    )
    # Nobody else sees it.
    other = client.get(asked.headers["Location"], headers=bearer(ada.bo_token))
    assert other.status_code == 404

    run_due_jobs(app)
    done = ok(client.get(asked.headers["Location"], headers=bearer(ada.token)), 200)
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["error"] is None
    export = {"id": done["result"].rsplit("/", 1)[1]}
    status = ok(client.get(done["result"], headers=bearer(ada.token)), 200)
    assert status["status"] == "ready" and status["size"] > 0
    listed = ok(client.get("/api/v1/me/exports", headers=bearer(ada.token)), 200)
    assert [item["id"] for item in listed["items"]] == [export["id"]]
    (note,) = [n for n in notifications.all(ada.id) if n.event_type == "account.export_ready"]
    assert note.title == "Your data export is ready" and "token" not in note.body

    mail = next(m for m in reversed(inbox.messages) if m["To"] == EMAIL)
    assert mail["Subject"] == "Your MARS data export is ready"
    [url] = text_links(mail.get_body(("plain",)).get_content())
    token = url.split("token=")[1]
    with app.app_context():
        row = db.session.get(DataExport, export["id"])
        # Neither the link nor the data is readable in the database.
        assert token not in database_dump(db) and row.digest != token
        assert b"PK" not in row.content[:10] and EMAIL.encode() not in row.content

    page = client.get(url)  # a scanner that opens the link uses nothing up
    assert page.status_code == 200
    form = Form(page.get_data(as_text=True))
    download = client.post(form.action, data=form.fields)
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(download.data))
    names = set(archive.namelist())
    assert {
        "README.txt",
        "auth.json",
        "audit.json",
        "events.json",
        "notifications.json",
        "projects.json",
        "tasks.json",
        "sso.json",
        "webhooks.json",
    } <= names
    auth = json.loads(archive.read("auth.json"))
    assert auth["account"]["email"] == EMAIL and auth["account"]["display_name"] == NAME
    assert auth["personal_access_tokens"][0]["name"] == "Ada's laptop"
    assert "digest" not in json.dumps(auth) and "password_hash" not in json.dumps(auth)
    projects = json.loads(archive.read("projects.json"))
    assert {p["name"] for p in projects["memberships"]} == {"Solo", "Shared", "Bo's"}
    assert json.loads(archive.read("sso.json"))["identities"][0]["subject"] == "ada-at-corp"
    hooks = json.loads(archive.read("webhooks.json"))["endpoints"]
    assert hooks[0]["signing_secret"] == "exists (never exported)"
    everything = "".join(archive.read(name).decode() for name in names)
    assert ada.hook["secret"] not in everything and ada.token not in everything
    audit_entries = json.loads(archive.read("audit.json"))["audit_entries"]
    assert any(e["action"] == "auth.registered" for e in audit_entries)
    readme = archive.read("README.txt").decode()
    assert ada.id in readme and "- projects.json" in readme

    # The link worked once; the file is gone.
    again = client.post(form.action, data=form.fields)
    assert again.status_code == 400 and "no longer works" in again.get_data(as_text=True)
    with app.app_context():
        row = db.session.get(DataExport, export["id"])
        assert row.status == "downloaded" and row.content is None
        actions = list(
            db.session.scalars(sa.select(AuditRecord.action).where(AuditRecord.target == ada.id))
        )
    assert "account.export_requested" in actions and "account.export_downloaded" in actions


def test_an_export_not_downloaded_in_time_is_deleted(app, db, create_user, token_for):
    user = create_user()
    headers = bearer(token_for(user, ["account:read", "account:write"]))
    client = app.test_client()
    read_only = client.post("/api/v1/me/export", headers=bearer(token_for(user, ["account:read"])))
    assert read_only.status_code == 403  # it mails the person: not for a read-only app
    operation = ok(client.post("/api/v1/me/export", headers=headers), 202)
    run_due_jobs(app)
    result = ok(client.get(f"/api/v1/operations/{operation['id']}", headers=headers), 200)
    export = {"id": result["result"].rsplit("/", 1)[1]}
    with time_machine.travel(utcnow() + dt.timedelta(hours=49)):
        with app.app_context():
            auth_privacy.maintenance()
        status = ok(client.get(f"/api/v1/me/exports/{export['id']}", headers=headers), 200)
    assert status["status"] == "expired"
    with app.app_context():
        assert db.session.get(DataExport, export["id"]).content is None


def test_an_operator_exports_a_person_to_a_file(app, person, tmp_path):
    out = tmp_path / "ada.zip"
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "export", EMAIL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    assert "projects.json" in zipfile.ZipFile(out).namelist()
    again = runner.invoke(args=["users", "export", EMAIL, "--out", str(out)])
    assert again.exit_code == 1 and "exists" in again.output
    with app.app_context():
        from mars_server.db import db

        assert db.session.scalar(
            sa.select(AuditRecord.action).where(
                AuditRecord.target == person.id, AuditRecord.action == "account.exported"
            )
        )


# --- Erasure ----------------------------------------------------------------------------------


def test_hook_mars_personal_data_erase(app, db, person):
    """The person is erased; a dump of the whole database then holds neither their e-mail,
    nor their name, nor their token's prefix; everyone else's data and the audit chain are
    intact."""
    seal_and_verify(app)  # most of the person's entries are chained before the erasure
    dump = database_dump(db)
    for trace in (EMAIL, NAME, person.hint, "203.0.113.77"):
        assert trace in dump, trace  # there to be erased

    result = app.test_cli_runner().invoke(args=["users", "erase", EMAIL, "--now", "--yes"])
    assert result.exit_code == 0, result.output
    assert "projects: 1 projects deleted (they had no other member)" in result.output
    assert "projects: removed from 2 projects" in result.output
    run_due_jobs(app)  # the events of the erasure: tasks of the deleted project, notifications

    dump = database_dump(db)
    for trace in (EMAIL, NAME, person.hint, "203.0.113.77", "ada-at-corp", "Ada's laptop"):
        assert trace not in dump, trace
    with app.app_context():
        assert db.session.get(User, person.id) is None
        for table in (
            "auth_personal_access_tokens",
            "auth_oauth_clients",
            "webhook_endpoints",
            "sso_identities",
            "notifications",
        ):
            column = (
                "owner_id" if table in ("auth_oauth_clients", "webhook_endpoints") else "user_id"
            )
            count = db.session.scalar(
                sa.text(f"SELECT count(*) FROM {table} WHERE {column} = :id"), {"id": person.id}
            )
            assert count == 0, table
        projects = dict(db.session.execute(sa.text("SELECT slug, id FROM projects")).all())
        assert "solo" not in projects and {"shared", "bos"} <= set(projects)
        members = db.session.execute(
            sa.text("SELECT project_id, user_id, role FROM project_members")
        ).all()
        assert (person.shared["id"], person.bo.id, "owner") in members
        assert (person.bos["id"], person.bo.id, "owner") in members
        assert all(row.user_id != person.id for row in members)
        # Bo's notification of being added by Ada no longer names her.
        bodies = db.session.scalars(
            sa.text("SELECT body FROM notifications WHERE user_id = :bo"), {"bo": person.bo.id}
        ).all()
        assert any("A former user added you" in body for body in bodies)
        # The task Ada added to Bo's project stays with it.
        assert (
            db.session.scalar(
                sa.text("SELECT name FROM tasks WHERE project_id = :p"), {"p": person.bos["id"]}
            )
            == "Ada's idea"
        )
        erased = db.session.scalar(
            sa.select(AuditRecord).where(
                AuditRecord.action == "account.erased", AuditRecord.target == person.id
            )
        )
        assert "projects" in erased.details["erased"]
        assert (
            db.session.scalar(sa.select(sa.func.count()).where(AuditRecord.erased_at.is_not(None)))
            >= 5
        )
        db.session.rollback()
    # Bo's account and token still work.
    assert app.test_client().get("/api/v1/me", headers=bearer(person.bo_token)).status_code == 200
    output = seal_and_verify(app)
    assert "erased" in output


def test_a_person_asks_for_deletion_and_it_happens_after_the_grace_period(mail_app, notifications):
    app, inbox = mail_app
    from mars_server.db import db
    from mars_server.testing import make_token

    user = make_user(app, email="cy@example.test", password=PASSWORD, display_name="Cy")
    token = make_token(app, user, ["account:read", "account:write"])
    client = app.test_client()
    wrong = client.delete("/api/v1/me", json={"password": "not it"}, headers=bearer(token))
    assert wrong.status_code == 422 and "This is not your password." in wrong.text
    missing = client.delete("/api/v1/me", json={}, headers=bearer(token))
    assert missing.status_code == 422
    scheduled = ok(
        client.delete("/api/v1/me", json={"password": PASSWORD}, headers=bearer(token)), 202
    )
    due = dt.datetime.fromisoformat(scheduled["deletion_due_at"])
    assert dt.timedelta(days=13, hours=23) < due - dt.datetime.now(dt.UTC) <= dt.timedelta(days=14)
    # Every token is revoked at once.
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    run_due_jobs(app)
    assert inbox.messages[-1]["Subject"] == "Your MARS account will be deleted"

    # Signing in during the grace period cancels it.
    with app.app_context():
        signin.authenticate("cy@example.test", PASSWORD, "127.0.0.1")
        db.session.commit()
        assert db.session.get(User, user.id).deletion_due_at is None
    run_due_jobs(app)
    assert inbox.messages[-1]["Subject"] == "Your MARS account stays"

    # Asked again, and not cancelled: erased once the time has come, and told so.
    with app.app_context():
        user = db.session.get(User, user.id)  # its version moved on
        db.session.refresh(user)
    token = make_token(app, user, ["account:write"])
    ok(client.delete("/api/v1/me", json={"password": PASSWORD}, headers=bearer(token)), 202)
    with time_machine.travel(utcnow() + dt.timedelta(days=13)), app.app_context():
        auth_privacy.maintenance()
        assert db.session.get(User, user.id) is not None  # not yet
    with time_machine.travel(utcnow() + dt.timedelta(days=14, minutes=1)):
        with app.app_context():
            auth_privacy.maintenance()
            assert db.session.get(User, user.id) is None
        run_due_jobs(app)
    assert inbox.messages[-1]["Subject"] == "Your MARS account is deleted"
    assert inbox.messages[-1]["To"] == "cy@example.test"


def test_hook_mars_account_deletion_blockers(app, db, person):
    """Ada is the only owner of a project with another member: she is told what to do."""
    client = app.test_client()
    me = bearer(person.token)
    ok(
        client.post(
            f"/api/v1/projects/{person.solo['id']}/members",
            json={"user_id": person.bo.id, "role": "member"},
            headers=me,
        ),
        200,
    )
    refused = client.delete("/api/v1/me", json={"password": PASSWORD}, headers=me)
    assert refused.status_code == 409
    assert refused.mimetype == "application/problem+json"
    assert refused.json["type"] == "urn:mars:problem:account-deletion-blocked"
    (reason,) = refused.json["reasons"]
    assert "only owner of the project 'Solo'" in reason and "make one of them an owner" in reason
    with app.app_context():
        assert db.session.get(User, person.id).deletion_due_at is None  # nothing changed
    # The operator is refused the same way.
    result = app.test_cli_runner().invoke(args=["users", "erase", EMAIL, "--now", "--yes"])
    assert result.exit_code == 1 and "only owner of the project 'Solo'" in result.output
    # Bo becomes an owner too: the deletion goes ahead.
    ok(
        client.post(
            f"/api/v1/projects/{person.solo['id']}/members",
            json={"user_id": person.bo.id, "role": "owner"},
            headers=me,
        ),
        200,
    )
    ok(client.delete("/api/v1/me", json={"password": PASSWORD}, headers=me), 202)


def test_the_last_admin_cannot_delete_their_account(app, create_user, token_for):
    admin = create_user(password=PASSWORD, roles=("admin",))
    with app.app_context():
        from mars_server.db import db

        others = db.session.scalar(
            sa.text("SELECT count(*) FROM auth_user_roles WHERE role = 'admin'")
        )
    if others != 1:
        pytest.skip("another admin exists in this database")
    response = app.test_client().delete(
        "/api/v1/me",
        json={"password": PASSWORD},
        headers=bearer(token_for(admin, ["account:write"])),
    )
    assert response.status_code == 409 and "only active admin" in response.json["detail"]


def _oauth_token(app, user, signed_in_at, first_party=True):
    """An OAuth access token of ``user`` from an authorization made at ``signed_in_at``."""
    from mars_server.db import db

    token = auth_secrets.new_opaque_token()
    with app.app_context():
        client = OAuthClient(
            client_id=f"web-{secrets.token_hex(4)}",
            name="Website",
            client_type="public",
            redirect_uris=["https://web.example/cb"],
            scopes="account:write",
            grant_types=["authorization_code"],
            first_party=first_party,
        )
        db.session.add(client)
        family = f"fam_{secrets.token_hex(8)}"
        db.session.add(
            AuthorizationCode(
                digest=auth_secrets.digest(secrets.token_hex(16)),
                client_id=client.client_id,
                user_id=user.id,
                redirect_uri="https://web.example/cb",
                scope="account:write",
                code_challenge="x" * 43,
                code_challenge_method="S256",
                expires_at=signed_in_at,
                used_at=signed_in_at,
                family_id=family,
                auth_time=signed_in_at,
            )
        )
        db.session.add(
            OAuthToken(
                client_id=client.client_id,
                user_id=user.id,
                scope="account:write",
                access_digest=auth_secrets.digest(token),
                family_id=family,
                access_expires_at=utcnow() + dt.timedelta(minutes=15),
            )
        )
        db.session.commit()
    return token


def test_an_account_without_a_password_is_deleted_after_a_fresh_sign_in(
    app, create_user, token_for
):
    user = create_user(password=None)
    client = app.test_client()
    with_pat = client.delete(
        "/api/v1/me", json={}, headers=bearer(token_for(user, ["account:write"]))
    )
    assert with_pat.status_code == 403 and "sign in to the website again" in with_pat.json["detail"]
    stale = _oauth_token(app, user, utcnow() - dt.timedelta(minutes=30))
    assert client.delete("/api/v1/me", json={}, headers=bearer(stale)).status_code == 403
    # An app the person has just allowed holds a fresh sign-in too: not enough.
    third_party = _oauth_token(app, user, utcnow() - dt.timedelta(minutes=2), first_party=False)
    assert client.delete("/api/v1/me", json={}, headers=bearer(third_party)).status_code == 403
    fresh = _oauth_token(app, user, utcnow() - dt.timedelta(minutes=2))
    ok(client.delete("/api/v1/me", json={}, headers=bearer(fresh)), 202)


def tamper(db, statement):
    """Change audit rows behind MARS's back, as someone with the database's keys could: on
    PostgreSQL past the append-only trigger (as a superuser may); committed."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(sa.text("SET LOCAL session_replication_role = replica"))
    db.session.execute(statement)
    db.session.commit()


# --- The audit chain after erasure ------------------------------------------------------------


def test_the_chain_catches_changed_personal_fields_but_not_an_erasure(app, db, create_user):
    from mars_server.events import audit

    user = create_user()
    with app.app_context():
        audit("test.personal", target=user.id, email="someone@example.test")
        db.session.commit()
    seal_and_verify(app)
    with app.app_context():
        row = db.session.scalar(sa.select(AuditRecord).where(AuditRecord.action == "test.personal"))
        assert row.personal_digest and row.personal_salt
        row_id, details, salt = row.id, dict(row.details), row.personal_salt
        tampered = dict(details, email="other@example.test")
        tamper(db, sa.update(AuditRecord).where(AuditRecord.id == row_id).values(details=tampered))
        verdict = chain.verify()
        assert verdict.problem and "address, user agent or details were modified" in verdict.problem
        tamper(db, sa.update(AuditRecord).where(AuditRecord.id == row_id).values(details=details))
        assert chain.verify().ok
        # Blanked without a recorded erasure: caught.
        tamper(
            db,
            sa.update(AuditRecord)
            .where(AuditRecord.id == row_id)
            .values(details={}, personal_salt=None, erased_at=utcnow() - dt.timedelta(days=1)),
        )
        verdict = chain.verify()
        assert verdict.problem and "no erasure of it is recorded" in verdict.problem
        tamper(
            db,
            sa.update(AuditRecord)
            .where(AuditRecord.id == row_id)
            .values(details=details, personal_salt=salt, erased_at=None),
        )


def test_an_erasure_covers_its_person_only(app, db, create_user):
    """Blanking a row of someone who was not erased is caught, though another erasure is
    recorded; an admin's address is not in the export of the person they acted on."""
    from mars_server.events import audit
    from mars_server.events.context import ActingContext, acting_as

    ada, bo, admin = create_user(), create_user(), create_user()
    with app.app_context():
        with acting_as(ActingContext(actor_id=admin.id, address="198.51.100.9")):
            audit("test.admin_acted", target=ada.id)
        audit("test.about_bo", target=bo.id, note="Bo's")
        db.session.commit()
        export = privacy_export_of(ada.id)
        (entry,) = [e for e in export["audit_entries"] if e["action"] == "test.admin_acted"]
        assert "address" not in entry
        privacy.erase(ada.id, check=False)
        db.session.commit()
        chain.seal(wait=True)
        db.session.commit()
        assert chain.verify().ok
        tamper(
            db,
            sa.update(AuditRecord)
            .where(AuditRecord.action == "test.about_bo")
            .values(details={}, personal_salt=None, erased_at=utcnow()),
        )
        verdict = chain.verify()
        assert verdict.problem and "no erasure of it is recorded" in verdict.problem


def privacy_export_of(user_id):
    from mars_server.audit import personal

    return personal.export(user_id)


def test_rows_chained_before_digests_are_erased_without_breaking_the_chain(app, db, create_user):
    """An entry sealed by an earlier MARS (its hash over the fields themselves) is erased: it
    keeps its place and the chain still verifies."""
    from mars_server.events import audit

    user = create_user()
    with app.app_context():
        audit("test.legacy", target=user.id, email="legacy@example.test")
        db.session.commit()
        monkey = chain.personal_digest
        chain.personal_digest = lambda salt, row: None  # as sealed before digests existed
        try:
            chain.seal(wait=True)
        finally:
            chain.personal_digest = monkey
        db.session.commit()
        row = db.session.scalar(sa.select(AuditRecord).where(AuditRecord.action == "test.legacy"))
        assert row.personal_digest is None and row.hash == chain.row_hash(row)
        assert chain.verify().ok
        privacy.erase(user.id, check=False)
        db.session.commit()
        row = db.session.scalar(sa.select(AuditRecord).where(AuditRecord.action == "test.legacy"))
        assert row.details == {} and row.erased_at is not None
        verdict = chain.verify()
        assert verdict.ok, verdict.problem
        assert verdict.erased_unchecked >= 1
        # What remains of it is still checked: its erasure recorded a fingerprint.
        tamper(
            db,
            sa.update(AuditRecord)
            .where(AuditRecord.action == "test.legacy")
            .values(action="test.innocent"),
        )
        verdict = chain.verify()
        assert (
            verdict.problem and "changed after its personal fields were erased" in verdict.problem
        )
        tamper(
            db,
            sa.update(AuditRecord)
            .where(AuditRecord.action == "test.innocent")
            .values(action="test.legacy"),
        )


def test_postgresql_lets_an_erasure_through_and_nothing_else(app, db, create_user):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL's")
    from mars_server.events import audit

    user = create_user()
    with app.app_context():
        audit("test.trigger", target=user.id, email="t@example.test")
        db.session.commit()
        chain.seal(wait=True)
        db.session.commit()
        row_id = db.session.scalar(
            sa.select(AuditRecord.id).where(AuditRecord.action == "test.trigger")
        )
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            db.session.execute(
                sa.update(AuditRecord).where(AuditRecord.id == row_id).values(details={"x": 1})
            )
        db.session.rollback()
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):  # an erasure must blank all
            db.session.execute(
                sa.update(AuditRecord)
                .where(AuditRecord.id == row_id)
                .values(details={}, erased_at=utcnow())
            )
        db.session.rollback()
        privacy.erase(user.id, check=False)
        db.session.commit()
        assert chain.verify().ok


def test_an_operator_schedules_an_erasure_and_can_cancel_it(app, db, create_user):
    user = create_user(email="dee@example.test")
    runner = app.test_cli_runner()
    scheduled = runner.invoke(args=["users", "erase", "dee@example.test"])
    assert scheduled.exit_code == 0 and "unless they sign in before" in scheduled.output
    with app.app_context():
        due = db.session.get(User, user.id).deletion_due_at
        assert dt.timedelta(days=13) < due - utcnow() <= dt.timedelta(days=14)
    kept = runner.invoke(args=["users", "keep", "dee@example.test"])
    assert kept.exit_code == 0 and "stays" in kept.output
    again = runner.invoke(args=["users", "keep", "dee@example.test"])
    assert again.exit_code == 1 and "not due for deletion" in again.output
    now = runner.invoke(args=["users", "erase", "dee@example.test", "--days", "0"])
    assert now.exit_code == 0, now.output
    run_due_jobs(app)  # a grace period of 0: the erasure job is queued at once
    with app.app_context():
        assert db.session.get(User, user.id) is None
        actions = set(
            db.session.scalars(sa.select(AuditRecord.action).where(AuditRecord.target == user.id))
        )
    assert {"account.deletion_requested", "account.deletion_cancelled", "account.erased"} <= actions


def test_an_erasure_that_fails_holds_back_no_other(app, db, create_user, monkeypatch):
    from mars_server.notifications import personal

    doomed, fine = create_user(), create_user()
    real = personal.erase

    def failing(user_id):
        if user_id == doomed.id:
            raise RuntimeError("a plugin failed")
        return real(user_id)

    monkeypatch.setattr(personal, "erase", failing)
    with app.app_context():
        for user in (doomed, fine):
            db.session.get(User, user.id).deletion_due_at = utcnow() - dt.timedelta(minutes=1)
        db.session.commit()
        assert auth_privacy.erase_due() == 1
        assert db.session.get(User, fine.id) is None
        left = db.session.get(User, doomed.id)
        assert left is not None and left.deletion_due_at > utcnow() + dt.timedelta(hours=23)


def test_a_person_asks_for_a_few_exports_a_day(app, db, create_user, token_for):
    headers = bearer(token_for(create_user(), ["account:write", "account:read"]))
    client = app.test_client()
    for _ in range(auth_privacy.EXPORTS_PER_DAY):
        ok(client.post("/api/v1/me/export", headers=headers), 202)
        run_due_jobs(app)
    refused = client.post("/api/v1/me/export", headers=headers)
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert 0 < int(refused.headers["Retry-After"]) <= 24 * 3600
    with time_machine.travel(utcnow() + dt.timedelta(days=1, minutes=1)):
        ok(client.post("/api/v1/me/export", headers=headers), 202)
