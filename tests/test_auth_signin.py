"""Signing in: throttling per account and per address, rehashing, no account enumeration."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from argon2 import PasswordHasher

from mars_server import create_app
from mars_server.auth import passwords, signin
from mars_server.auth.models import User
from mars_server.config import ConfigError, CoreSettingsSchema

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
    # The tests' apps hash at argon2id's cheapest cost (m=8, t=1, p=1): a hash made with any
    # other cost is outdated there, as production's own hashes are after a change of cost.
    older = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1).hash(PASSWORD)
    db.session.get(User, user.id).password_hash = older
    db.session.commit()
    signin.authenticate("ada@example.test", PASSWORD, None)
    stored = db.session.get(User, user.id).password_hash
    assert stored != older
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert passwords.verify_password(stored, PASSWORD) == (True, None)


def test_the_hash_cost_is_rfc_9106_low_memory_unless_set(make_app):
    app = make_app(
        PASSWORD_HASH_MEMORY_KIB=65536, PASSWORD_HASH_TIME_COST=3, PASSWORD_HASH_PARALLELISM=4
    )
    defaults = CoreSettingsSchema().load({})
    assert [
        defaults[f"PASSWORD_HASH_{key}"] for key in ("MEMORY_KIB", "TIME_COST", "PARALLELISM")
    ] == [
        65536,
        3,
        4,
    ]
    with app.app_context():
        hashed = passwords.hash_password(PASSWORD)
        assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert passwords.verify_password(hashed, PASSWORD) == (True, None)


@pytest.mark.parametrize(
    ("memory", "passes", "refused"),
    [(19456, 2, False), (47104, 1, False), (7168, 5, False), (19456, 1, True), (4096, 10, True)],
)
def test_production_refuses_a_hash_cost_below_owasps_minimum(tmp_path, memory, passes, refused):
    settings = {
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "k" * 40,
        "PUBLIC_URL": "https://mars.example.org",
        "MAIL_BACKEND": "files",
        "PASSWORD_HASH_MEMORY_KIB": memory,
        "PASSWORD_HASH_TIME_COST": passes,
        "PASSWORD_HASH_PARALLELISM": 1,
    }
    if refused:
        with pytest.raises(ConfigError, match="below OWASP's minimum for argon2id in production"):
            create_app(settings)
    else:
        assert create_app(settings).config["MARS"]["PASSWORD_HASH_MEMORY_KIB"] == memory


def test_argon2_needs_eight_kib_per_lane(make_app):
    with pytest.raises(ConfigError, match="at least 8 KiB per lane"):
        make_app(PASSWORD_HASH_MEMORY_KIB=16, PASSWORD_HASH_PARALLELISM=4)


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


def test_long_passwords_are_not_truncated(app):
    long = "a-long-passphrase-" * 7  # 126 characters, past bcrypt's 72 bytes
    hashed = passwords.hash_password(long)
    assert passwords.verify_password(hashed, long)[0]
    assert not passwords.verify_password(hashed, long[:72])[0]
