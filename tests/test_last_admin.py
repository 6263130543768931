"""The last active admin stays one: no API call and no plain CLI command leaves MARS without
an admin (issue 9, item 7)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from mars_server.audit.models import AuditRecord
from mars_server.auth import accounts
from mars_server.auth.models import User, UserRole
from mars_server.db import db
from mars_server.testing import make_user

ADMIN_SCOPES = ["users:read", "users:write", "account:read"]


def roles_of(user_id: str) -> set[str]:
    db.session.expire_all()
    return set(db.session.scalars(sa.select(UserRole.role).where(UserRole.user_id == user_id)))


def status_of(user_id: str) -> str:
    db.session.expire_all()
    return db.session.get(User, user_id).status


def audited(action: str) -> list[AuditRecord]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(AuditRecord).where(AuditRecord.action == action)))


def assert_last_admin_problem(response, email: str) -> None:
    assert response.status_code == 409, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["type"] == "urn:mars:problem:last-admin"
    assert response.json["title"] == "This would leave no active admin."
    assert f"{email} is the last active admin" in response.json["detail"]
    assert "Grant the admin role to another active account first." in response.json["detail"]


def test_the_last_admin_cannot_drop_their_own_admin_role(client, create_user, auth_headers):
    admin = create_user(email="root@example.test", roles=("member", "admin"))
    headers = auth_headers(admin, ADMIN_SCOPES)
    refused = client.delete(f"/api/v1/users/{admin.id}/roles/admin", headers=headers)
    assert_last_admin_problem(refused, "root@example.test")
    assert roles_of(admin.id) == {"admin", "member"}
    assert audited("auth.role_revoked") == []
    # Still an admin: the API keeps working for them.
    assert client.get(f"/api/v1/users/{admin.id}", headers=headers).json["roles"] == [
        "admin",
        "member",
    ]


def test_admins_who_are_not_active_do_not_count(client, create_user, auth_headers):
    admin = create_user(email="root@example.test", roles=("member", "admin"))
    disabled = create_user(roles=("member", "admin"), status="disabled")
    pending = create_user(roles=("member", "admin"), status="pending")
    headers = auth_headers(admin, ADMIN_SCOPES)
    refused = client.delete(f"/api/v1/users/{admin.id}/roles/admin", headers=headers)
    assert_last_admin_problem(refused, "root@example.test")
    assert "admin" in roles_of(admin.id)
    # Their own admin roles may go: the one active admin stays.
    for user in (disabled, pending):
        taken = client.delete(f"/api/v1/users/{user.id}/roles/admin", headers=headers)
        assert taken.status_code == 200, taken.json
        assert taken.json["roles"] == ["member"]


def test_an_admin_may_step_down_while_another_active_admin_remains(
    client, create_user, auth_headers
):
    first = create_user(email="first@example.test", roles=("member", "admin"))
    second = create_user(email="second@example.test", roles=("member", "admin"))
    first_headers = auth_headers(first, ADMIN_SCOPES)
    stepped_down = client.delete(f"/api/v1/users/{first.id}/roles/admin", headers=first_headers)
    assert stepped_down.status_code == 200, stepped_down.json
    assert stepped_down.json["roles"] == ["member"]
    # Now the second is the last one.
    second_headers = auth_headers(second, ADMIN_SCOPES)
    refused = client.delete(f"/api/v1/users/{second.id}/roles/admin", headers=second_headers)
    assert_last_admin_problem(refused, "second@example.test")
    assert roles_of(second.id) == {"admin", "member"}


def test_the_refusal_is_documented(app):
    spec = app.test_client().get("/api/v1/openapi.json").json
    operation = spec["paths"]["/api/v1/users/{user_id}/roles/{role}"]["delete"]
    assert "409" in operation["responses"]
    assert "last-admin" in operation["description"]


# --- The operators' commands ---------------------------------------------------------------------


def test_the_cli_does_not_disable_the_last_admin_without_force(
    app, runner, client, create_user, token_for
):
    admin = create_user(email="root@example.test", roles=("member", "admin"))
    token = token_for(admin, ["account:read"])
    me = {"Authorization": f"Bearer {token}"}

    refused = runner.invoke(args=["users", "disable", "root@example.test"])
    assert refused.exit_code == 1
    assert "root@example.test is the last active admin" in refused.output
    assert "--force" in refused.output
    assert status_of(admin.id) == "active"
    assert audited("auth.user_disabled") == []
    assert client.get("/api/v1/me", headers=me).status_code == 200  # tokens kept

    forced = runner.invoke(args=["users", "disable", "root@example.test", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "there is no active admin now" in forced.output
    assert status_of(admin.id) == "disabled"
    [record] = audited("auth.user_disabled")
    assert record.details == {"previous_status": "active", "last_admin": True}
    assert client.get("/api/v1/me", headers=me).status_code == 401

    # The way back: an operator names an admin again.
    assert runner.invoke(args=["users", "enable", "root@example.test"]).exit_code == 0
    assert accounts.count_active_admins() == 1


def test_the_cli_does_not_take_the_last_admin_role_without_force(app, runner, create_user):
    admin = create_user(email="root@example.test", roles=("member", "admin"))
    refused = runner.invoke(args=["users", "revoke-role", "root@example.test", "admin"])
    assert refused.exit_code == 1
    assert "root@example.test is the last active admin" in refused.output
    assert "--force" in refused.output
    assert roles_of(admin.id) == {"admin", "member"}

    create_user(email="ops@example.test", roles=("member", "admin"))
    allowed = runner.invoke(args=["users", "revoke-role", "root@example.test", "admin"])
    assert allowed.exit_code == 0, allowed.output
    assert "warning" not in allowed.output
    assert roles_of(admin.id) == {"member"}
    assert runner.invoke(args=["users", "disable", "ops@example.test"]).exit_code == 1

    forced = runner.invoke(args=["users", "revoke-role", "ops@example.test", "admin", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "there is no active admin now" in forced.output
    assert audited("auth.role_revoked")[-1].details == {"role": "admin", "last_admin": True}
    assert accounts.count_active_admins() == 0


# --- Concurrency ------------------------------------------------------------------------------


def race(app, change, holder_id: str, waiter_id: str) -> dict[str, str]:
    """``change(user)`` for two admins in two transactions at once: the holder's waits, with
    the admin rows locked, until the waiter's has started. What each ended in."""
    locked = threading.Event()
    results: dict[str, str] = {}

    def run(user_id: str, name: str, *, hold: bool) -> None:
        with app.app_context():
            try:
                change(accounts.get_user(user_id))
                if hold:  # the other transaction starts while this one holds the lock
                    locked.set()
                    threading.Event().wait(0.5)
                db.session.commit()
                results[name] = "changed"
            except accounts.LastAdmin:
                db.session.rollback()
                results[name] = "refused"
            finally:
                locked.set()
                db.session.remove()

    holder = threading.Thread(target=run, args=(holder_id, "holder"), kwargs={"hold": True})
    holder.start()
    assert locked.wait(10)
    waiter = threading.Thread(target=run, args=(waiter_id, "waiter"), kwargs={"hold": False})
    waiter.start()
    holder.join(10)
    waiter.join(10)
    return results


@pytest.mark.mars_backend("postgresql")  # SQLite lets one writer at a time anyway
def test_two_admins_taking_each_others_role_at_once_cannot_both_succeed(app):
    """Each takes the other's admin role in its own transaction, at the same moment: the
    admin rows are locked, so the second waits for the first and then refuses."""
    first = make_user(app, roles=("member", "admin")).id
    second = make_user(app, roles=("member", "admin")).id
    db.session.remove()
    results = race(
        app, lambda user: accounts.revoke_role(user, "admin", commit=False), second, first
    )
    assert results == {"holder": "changed", "waiter": "refused"}
    assert roles_of(first) == {"admin", "member"}
    assert roles_of(second) == {"member"}


@pytest.mark.mars_backend("postgresql")
def test_disabling_two_admins_at_once_leaves_one(app):
    first = make_user(app, roles=("member", "admin")).id
    second = make_user(app, roles=("member", "admin")).id
    db.session.remove()
    results = race(
        app, lambda user: accounts.set_status(user, "disabled", commit=False), first, second
    )
    assert results == {"holder": "changed", "waiter": "refused"}
    assert (status_of(first), status_of(second)) == ("disabled", "active")
