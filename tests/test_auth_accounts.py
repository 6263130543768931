"""Registration, e-mail verification, password reset and change, and the admin commands."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import time_machine

from mars_server.testing import signed_in_client
from tests.mailbox import development_mail as mailbox
from tests.mailbox import link_token

PASSWORD = "correct horse battery staple"


def test_register_verify_and_use_the_account(app):
    client = app.test_client()
    response = client.post(
        "/api/v1/accounts", json={"email": "New@Example.test", "password": PASSWORD}
    )
    assert response.status_code == 202
    (message,) = mailbox(app)
    assert message["To"] == "New@Example.test"
    token = link_token(message)
    assert client.post("/api/v1/accounts/verify", json={"token": token}).status_code == 204
    assert client.post("/api/v1/accounts/verify", json={"token": token}).status_code == 400


def test_registering_a_taken_address_looks_the_same(app, create_user):
    create_user(email="taken@example.test")
    client = app.test_client()
    taken = client.post(
        "/api/v1/accounts", json={"email": "TAKEN@example.test", "password": PASSWORD}
    )
    fresh = client.post(
        "/api/v1/accounts", json={"email": "fresh@example.test", "password": PASSWORD}
    )
    assert taken.status_code == fresh.status_code == 202
    assert taken.json == fresh.json


def test_common_passwords_are_refused_at_registration(app):
    response = app.test_client().post(
        "/api/v1/accounts", json={"email": "weak@example.test", "password": "password123"}
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["pointer"] == "/password"


def test_password_reset_by_email_revokes_tokens(app, create_user, token_for):
    user = create_user(email="forgot@example.test", password=PASSWORD)
    old_token = token_for(user, ["account:read"])
    client = app.test_client()
    for address in ("forgot@example.test", "nobody@example.test"):
        assert (
            client.post("/api/v1/accounts/password-reset", json={"email": address}).status_code
            == 202
        )
    (message,) = mailbox(app)  # only the real account got mail
    token = link_token(message)
    new = "a brand new passphrase"
    assert (
        client.post(
            "/api/v1/accounts/password-reset/confirm", json={"token": token, "password": new}
        ).status_code
        == 204
    )
    assert (
        client.post(
            "/api/v1/accounts/password-reset/confirm", json={"token": token, "password": new}
        ).status_code
        == 400
    )
    assert (
        client.get("/api/v1/me", headers={"Authorization": f"Bearer {old_token}"}).status_code
        == 401
    )


def test_changing_the_password_needs_the_current_one(app, create_user):
    user = create_user(password=PASSWORD)
    client = signed_in_client(app, user)
    wrong = client.post(
        "/api/v1/me/password",
        json={"current_password": "nope nope nope", "new_password": "another passphrase"},
    )
    assert wrong.status_code == 422
    ok = client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "another passphrase"},
    )
    assert ok.status_code == 204
    assert client.get("/api/v1/me").status_code == 401  # every token was revoked


def test_admin_commands(app, runner, db):
    created = runner.invoke(args=["users", "create", "root@example.test", "--admin"])
    assert created.exit_code == 0, created.output
    one_time = created.output.strip().splitlines()[-1]
    assert len(one_time) >= 12
    from mars_server.auth import accounts, signin

    user = accounts.find_user("root@example.test")
    assert user.role_names == {"admin", "member"}
    assert user.must_change_password
    assert signin.authenticate("root@example.test", one_time, None).id == user.id

    token = runner.invoke(
        args=[
            "tokens",
            "create",
            "root@example.test",
            "--scope",
            "account:read",
            "--expires-in",
            "7",
        ]
    )
    assert token.exit_code == 0, token.output
    secret = token.output.strip().splitlines()[-1]
    assert secret.startswith("mars_pat_")
    headers = {"Authorization": f"Bearer {secret}"}
    assert app.test_client().get("/api/v1/me", headers=headers).status_code == 200

    # The only admin: the operator must insist (see tests/test_last_admin.py).
    revoke = ["users", "revoke-role", "root@example.test", "admin", "--force"]
    assert runner.invoke(args=revoke).exit_code == 0
    assert runner.invoke(args=["users", "grant-role", "root@example.test", "wizard"]).exit_code == 1
    revoked = runner.invoke(args=["tokens", "revoke", "--user", "root@example.test"])
    assert "revoked 1 tokens" in revoked.output
    assert app.test_client().get("/api/v1/me", headers=headers).status_code == 401

    temporary = runner.invoke(args=["users", "reset-password", "root@example.test", "--temporary"])
    assert temporary.exit_code == 0
    assert runner.invoke(args=["users", "disable", "root@example.test"]).exit_code == 0
    assert runner.invoke(args=["users", "enable", "root@example.test"]).exit_code == 0
    missing = runner.invoke(args=["users", "disable", "ghost@example.test"])
    assert missing.exit_code == 1
    assert "no user" in missing.output


@pytest.mark.parametrize("stdin", ["short\n", "password123\n"])
def test_cli_refuses_weak_passwords(runner, stdin):
    result = runner.invoke(
        args=["users", "create", "weak@example.test", "--password-stdin"], input=stdin
    )
    assert result.exit_code == 1
    assert "password" in result.output


def test_verification_and_reset_links_expire(app, create_user):
    """Links live ``verify_link_hours`` (48) and ``reset_link_minutes`` (30)."""
    client = app.test_client()
    for name in ("early", "late"):
        create_user(email=f"{name}@example.test", password=PASSWORD)
    start = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        for name in ("first", "second"):
            client.post(
                "/api/v1/accounts", json={"email": f"{name}@example.test", "password": PASSWORD}
            )
        for name in ("early", "late"):
            client.post("/api/v1/accounts/password-reset", json={"email": f"{name}@example.test"})
        links = {message["To"].split("@")[0]: link_token(message) for message in mailbox(app)}
        assert sorted(links) == ["early", "first", "late", "second"]

        def reset(name):
            body = {"token": links[name], "password": f"a brand new passphrase for {name}"}
            return client.post("/api/v1/accounts/password-reset/confirm", json=body)

        def verify(name):
            return client.post("/api/v1/accounts/verify", json={"token": links[name]})

        clock.shift(dt.timedelta(minutes=29, seconds=59))
        assert reset("early").status_code == 204
        clock.shift(dt.timedelta(seconds=2))  # 30 minutes and a second after it was sent
        expired = reset("late")
        assert expired.status_code == 400
        assert expired.mimetype == "application/problem+json"

        clock.move_to(start + dt.timedelta(hours=47, minutes=59))
        assert verify("first").status_code == 204
        clock.move_to(start + dt.timedelta(hours=48, seconds=1))
        assert verify("second").status_code == 400


def test_a_new_reset_link_replaces_the_older_one(app, create_user):
    create_user(email="twice@example.test", password=PASSWORD)
    client = app.test_client()
    for _ in range(2):
        client.post("/api/v1/accounts/password-reset", json={"email": "twice@example.test"})
    older, newer = (link_token(message) for message in mailbox(app))
    for token, status in ((older, 400), (newer, 204)):
        body = {"token": token, "password": "a brand new passphrase"}
        assert (
            client.post("/api/v1/accounts/password-reset/confirm", json=body).status_code == status
        )


def test_operator_commands_take_effect(app, runner, create_user, token_for):
    """What the admin commands change, seen from outside: sign-in, tokens, access."""
    from mars_server.auth import signin

    chosen = "an operator chose this passphrase"
    created = runner.invoke(
        args=["users", "create", "ops@example.test", "--password-stdin"], input=chosen + "\n"
    )
    assert created.exit_code == 0, created.output
    assert chosen not in created.output
    assert signin.authenticate("ops@example.test", chosen, None).email == "ops@example.test"

    user = create_user(email="kept@example.test")
    one, other = token_for(user, ["account:read"]), token_for(user, ["account:read"])
    client = app.test_client()

    def status(token):
        return client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code

    listed = client.get(
        "/api/v1/me/tokens",
        headers={"Authorization": f"Bearer {token_for(user, ['account:read'])}"},
    ).json["items"]
    first_id = listed[-1]["id"]  # newest first: the last is ``one``
    revoked = runner.invoke(args=["tokens", "revoke", first_id])
    assert revoked.exit_code == 0, revoked.output
    assert (status(one), status(other)) == (401, 200)

    assert runner.invoke(args=["users", "disable", "kept@example.test"]).exit_code == 0
    assert status(other) == 401
    assert runner.invoke(args=["users", "enable", "kept@example.test"]).exit_code == 0
    assert status(other) == 401  # revoked when disabled: enabling gives nothing back
    assert status(token_for(user, ["account:read"])) == 200  # the account works again


def test_guessing_the_current_password_is_throttled_like_signing_in(app, create_user):
    """A stolen token must not become a way to guess the password: wrong current passwords
    count as failed sign-ins of the account (5 per 15 minutes by default)."""
    user = create_user(password=PASSWORD)
    client = signed_in_client(app, user)

    def change(current):
        return client.post(
            "/api/v1/me/password",
            json={"current_password": current, "new_password": "another passphrase"},
        )

    for guess in range(5):
        assert change(f"guess number {guess}").status_code == 422
    locked = change(PASSWORD)  # even the right one, now
    assert locked.status_code == 429
    assert locked.mimetype == "application/problem+json"
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert client.get("/api/v1/me").status_code == 200  # nothing was changed or revoked
    from mars_server.auth import signin

    with pytest.raises(signin.TooManyAttempts):  # and signing in is locked out too
        signin.authenticate(user.email, PASSWORD, None)


def from_address(address):
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_reset_mails_to_one_address_are_throttled_without_telling(app, create_user):
    """30 requests in a second (from 30 addresses) for one address: 3 mails an hour
    (``account_mails_per_recipient``, ``account_mail_window_minutes``), and the same 202 for
    every request, for a real account and an unknown address alike."""
    create_user(email="target@example.test", password=PASSWORD)
    client = app.test_client()
    answers = set()
    with time_machine.travel(dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC), tick=False) as clock:
        for n in range(30):
            for email in ("target@example.test", "nobody@example.test"):
                response = client.post(
                    "/api/v1/accounts/password-reset",
                    json={"email": email},
                    **from_address(f"192.0.2.{n}"),
                )
                answers.add((response.status_code, response.mimetype, response.data))
        assert len(answers) == 1
        assert answers.pop()[0] == 202
        assert [m["To"] for m in mailbox(app)] == ["target@example.test"] * 3

        clock.shift(dt.timedelta(hours=1, seconds=1))
        client.post("/api/v1/accounts/password-reset", json={"email": "TARGET@example.test"})
        assert len(mailbox(app)) == 4


def test_registration_and_reset_mails_share_the_recipients_allowance(app):
    client = app.test_client()
    body = {"email": "fresh@example.test", "password": PASSWORD}
    assert (
        client.post("/api/v1/accounts", json=body, **from_address("192.0.2.1")).status_code == 202
    )
    for n in range(4):
        reset = client.post(
            "/api/v1/accounts/password-reset",
            json={"email": "fresh@example.test"},
            **from_address(f"198.51.100.{n}"),
        )
        assert reset.status_code == 202
    subjects = [message["Subject"] for message in mailbox(app)]
    assert len(subjects) == 3  # the verification link and two reset links


def test_one_address_asking_for_many_mails_gets_429(app, db):
    """An address may ask for 10 account e-mails an hour (``account_mail_requests_per_address``),
    whatever the recipients; then 429, which says nothing about any account."""
    from mars_server.auth.models import User

    client = app.test_client()
    spammer = from_address("203.0.113.9")
    for n in range(10):
        if n % 2:
            response = client.post(
                "/api/v1/accounts",
                json={"email": f"victim{n}@example.test", "password": PASSWORD},
                **spammer,
            )
        else:
            response = client.post(
                "/api/v1/accounts/password-reset",
                json={"email": f"victim{n}@example.test"},
                **spammer,
            )
        assert response.status_code == 202
    for path, body in (
        ("/api/v1/accounts", {"email": "late@example.test", "password": PASSWORD}),
        ("/api/v1/accounts/password-reset", {"email": "victim1@example.test"}),
    ):
        refused = client.post(path, json=body, **spammer)
        assert refused.status_code == 429
        assert refused.mimetype == "application/problem+json"
        assert refused.json["type"] == "urn:mars:problem:too-many-requests"
        assert 0 < refused.json["retry_after"] <= 3600
        assert refused.headers["Retry-After"] == str(refused.json["retry_after"])
    assert db.session.scalar(sa.select(User).where(User.email == "late@example.test")) is None
    assert len(mailbox(app)) == 5  # the five registrations; the resets were for no account
    elsewhere = client.post(
        "/api/v1/accounts", json={"email": "late@example.test", "password": PASSWORD}
    )
    assert elsewhere.status_code == 202
