"""Signing in: throttling per account and per address, rehashing, no account enumeration."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from argon2 import PasswordHasher

from mars_server.auth import passwords, signin
from mars_server.auth.models import User

PASSWORD = "correct horse battery staple"


@pytest.fixture
def user(create_user):
    return create_user(email="ada@example.test", password=PASSWORD)


def test_the_right_password_signs_in_and_is_recorded(app, db, user):
    signed_in = signin.authenticate("ADA@example.test", PASSWORD, "192.0.2.1")
    assert signed_in.id == user.id
    assert db.session.get(User, user.id).last_login_at is not None


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("ada@example.test", "wrong password!"),
        ("nobody@example.test", PASSWORD),
    ],
)
def test_wrong_password_and_unknown_account_fail_alike(app, user, email, password):
    with pytest.raises(signin.SignInFailed) as info:
        signin.authenticate(email, password, "192.0.2.1")
    assert str(info.value) == "The e-mail address or the password is wrong."


def test_disabled_and_pending_accounts_cannot_sign_in(app, create_user):
    create_user(email="off@example.test", password=PASSWORD, status="disabled")
    create_user(email="new@example.test", password=PASSWORD, status="pending")
    for email in ("off@example.test", "new@example.test"):
        with pytest.raises(signin.SignInFailed):
            signin.authenticate(email, PASSWORD, None)


def test_an_account_is_locked_after_five_failures_then_freed(app, user):
    with time_machine.travel(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC), tick=False) as clock:
        for n in range(5):
            with pytest.raises(signin.SignInFailed):
                signin.authenticate("ada@example.test", "wrong password!", f"192.0.2.{n}")
        with pytest.raises(signin.TooManyAttempts) as info:
            signin.authenticate("ada@example.test", PASSWORD, "198.51.100.1")
        assert 0 < info.value.extra["retry_after"] <= 15 * 60
        assert info.value.headers["Retry-After"] == str(info.value.extra["retry_after"])
        clock.shift(dt.timedelta(minutes=15, seconds=1))
        assert signin.authenticate("ada@example.test", PASSWORD, "198.51.100.1").id == user.id


def test_an_address_is_locked_after_twenty_failures_across_accounts(app, user):
    for n in range(20):
        with pytest.raises(signin.SignInFailed):
            signin.authenticate(f"guess{n}@example.test", "whatever123", "203.0.113.9")
    with pytest.raises(signin.TooManyAttempts):
        signin.authenticate("ada@example.test", PASSWORD, "203.0.113.9")
    assert signin.authenticate("ada@example.test", PASSWORD, "203.0.113.10").id == user.id


def test_outdated_hashes_are_rehashed_at_sign_in(app, db, user):
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    db.session.get(User, user.id).password_hash = weak
    db.session.commit()
    signin.authenticate("ada@example.test", PASSWORD, None)
    stored = db.session.get(User, user.id).password_hash
    assert stored != weak
    assert stored.startswith("$argon2id$")
    assert passwords.verify_password(stored, PASSWORD) == (True, None)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 8"),
        ("x" * 129, "at most 128"),
        ("password1", "most common"),
        ("ada@example.test", "e-mail address"),
    ],
)
def test_weak_passwords_are_refused(password, reason):
    problems = passwords.password_problems(password, email="ada@example.test")
    assert problems
    assert reason in problems[0]


def test_long_passwords_are_not_truncated():
    long = "a-long-passphrase-" * 7  # 126 characters, past bcrypt's 72 bytes
    hashed = passwords.hash_password(long)
    assert passwords.verify_password(hashed, long)[0]
    assert not passwords.verify_password(hashed, long[:72])[0]
