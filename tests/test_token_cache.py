"""The token -> caller cache: a warm token costs no database read, and every change that
makes a token invalid (or changes what it may do) is seen at once, by every instance.

Two apps on one database play two instances: sharing one Redis, or (without Redis) one
instance folder, where the generation file lives.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import time
from pathlib import Path

import flask
import pytest
import sqlalchemy as sa
import time_machine
from redis import exceptions as redis_errors

from mars_server.auth import accounts, apps, oauth, token_cache, tokens
from mars_server.auth.models import PersonalAccessToken, User, UserRole
from mars_server.db import db
from mars_server.testing import make_token, make_user

ME = "/api/v1/me"


def stored_key(key: str) -> str:
    """``key`` as the cache stores it in Redis (the prefix is per pytest-xdist worker)."""
    import mars_server.cache

    return mars_server.cache.REDIS_PREFIX + key


@pytest.fixture(params=["redis", "memory"])
def instances(request, make_app):
    """Two instances of MARS on one database: ``(a, b)``."""
    settings = {"RATELIMIT_ENABLED": False}
    if request.param == "redis":
        settings["REDIS_URL"] = request.getfixturevalue("redis_url")
    return make_app(**settings), make_app(**settings)


@contextlib.contextmanager
def statements(app):
    """Collect the SQL statements ``app`` runs inside the block."""
    seen = []
    with app.app_context():
        engine = db.engine

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def status(app, token, url=ME):
    return app.test_client().get(url, headers=bearer(token)).status_code


def generation(app):
    with app.app_context():
        cache = token_cache.token_cache()
        if cache._file is not None:
            return cache._file.read()
        return cache.namespace.get(token_cache.GENERATION_KEY)


def check(app, token):
    """Who ``token`` is, as a request to ``app`` would find out."""
    with app.test_request_context(headers=bearer(token)):
        return tokens.actor_from_request(flask.request)


def test_a_warm_token_is_checked_without_the_database(instances):
    a, _ = instances
    user = make_user(a, roles=("member", "admin"))
    token = make_token(a, user, ["account:read"])
    first = check(a, token)
    with statements(a) as seen:
        for _ in range(3):
            assert check(a, token) == first
    assert seen == []
    assert first.roles == {"member", "admin"}
    assert "users:manage" in first.permissions
    assert first.scopes == {"account:read"}


def test_cache_entries_are_keyed_by_digest_never_the_token(make_app, redis_url):
    import redis

    a = make_app(REDIS_URL=redis_url, RATELIMIT_ENABLED=False)
    token = make_token(a, make_user(a), ["account:read"])
    assert status(a, token) == 200
    client = redis.Redis.from_url(redis_url)
    keys = [key.decode() for key in client.keys(stored_key("auth:*"))]
    assert sorted(keys) == sorted(
        [stored_key("auth:gen"), stored_key(f"auth:pat:{tokens.secrets.digest(token)}")]
    )
    for key in keys:
        assert token.encode() not in client.get(key)


def test_the_cache_can_be_turned_off(make_app):
    a = make_app(TOKEN_CACHE_SECONDS=0)
    token = make_token(a, make_user(a), ["account:read"])
    check(a, token)
    with statements(a) as seen:
        check(a, token)
    assert any("auth_personal_access_tokens" in statement for statement in seen)


def test_a_revoked_token_fails_at_once_on_the_other_instance(instances):
    a, b = instances
    user = make_user(a)
    token = make_token(a, user, ["account:read"])
    manager = make_token(a, user, ["account:read", "account:write"])
    assert status(b, token) == 200
    assert status(b, token) == 200  # warm on b
    listed = a.test_client().get("/api/v1/me/tokens", headers=bearer(manager)).json["items"]
    token_id = next(t["id"] for t in listed if t["scopes"] == ["account:read"])
    assert (
        a.test_client().delete(f"/api/v1/me/tokens/{token_id}", headers=bearer(manager)).status_code
        == 204
    )
    assert status(b, token) == 401


@pytest.mark.parametrize(
    "command",
    [
        ["users", "disable", "{email}"],
        ["tokens", "revoke", "--user", "{email}"],
        ["tokens", "revoke", "{token_id}"],
    ],
)
def test_an_operator_revoking_from_the_cli_is_seen_at_once(instances, command):
    a, b = instances
    user = make_user(a, roles=("member", "admin"), email="gone@example.test")
    make_user(a, roles=("member", "admin"))  # disabling the last admin needs --force
    token = make_token(a, user, ["account:read"])
    with a.app_context():
        token_id = db.session.scalar(sa.select(PersonalAccessToken.id))
    assert status(b, token) == 200
    args = [part.format(email=user.email, token_id=token_id) for part in command]
    result = a.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    assert status(b, token) == 401


def test_roles_granted_or_taken_are_seen_at_once(instances):
    a, b = instances
    admin = make_user(a, roles=("member", "admin"))
    make_user(a, roles=("member", "admin"))
    user = make_user(a, email="promoted@example.test")
    token = make_token(a, user, ["users:read"])
    assert status(b, token, "/api/v1/users") == 403  # warm: a member may not list users
    granted = a.test_client().post(
        f"/api/v1/users/{user.id}/roles",
        json={"role": "admin"},
        headers=bearer(make_token(a, admin, ["users:read", "users:write"])),
    )
    assert granted.status_code == 200, granted.json
    assert status(b, token, "/api/v1/users") == 200
    result = a.test_cli_runner().invoke(args=["users", "revoke-role", user.email, "admin"])
    assert result.exit_code == 0, result.output
    assert status(b, token, "/api/v1/users") == 403


def test_a_password_reset_revoking_every_token_is_seen_at_once(instances):
    a, b = instances
    user = make_user(a)
    token = make_token(a, user, ["account:read"])
    assert status(b, token) == 200
    with a.app_context():
        accounts.revoke_all_tokens(db.session.get(User, user.id), reason="password_reset")
        db.session.commit()
    assert status(b, token) == 401


def test_a_rolled_back_revocation_changes_nothing(instances):
    a, b = instances
    user = make_user(a)
    token = make_token(a, user, ["account:read"])
    assert status(b, token) == 200
    before = generation(a)
    with a.app_context():
        accounts.revoke_all_tokens(db.session.get(User, user.id), commit=False)
        db.session.get(User, user.id).status = "disabled"
        db.session.flush()
        db.session.rollback()
    assert generation(a) == before
    with statements(b) as seen:
        assert status(b, token) == 200
    assert not any("auth_personal_access_tokens" in statement for statement in seen)


def test_unrelated_changes_keep_the_cache(instances):
    a, b = instances
    user = make_user(a)
    token = make_token(a, user, ["account:read", "account:write"])
    assert status(b, token) == 200
    before = generation(a)
    me = a.test_client().get(ME, headers=bearer(token))
    renamed = a.test_client().patch(
        ME,
        json={"display_name": "Renamed"},
        headers={**bearer(token), "If-Match": me.headers["ETag"]},
    )
    assert renamed.status_code == 200, renamed.json
    created = a.test_client().post(  # a new token changes no other token's check
        "/api/v1/me/tokens",
        json={"name": "more", "scopes": ["account:read"]},
        headers=bearer(token),
    )
    assert created.status_code == 201, created.json
    assert generation(a) == before


def test_an_expired_token_is_refused_even_when_cached(make_app, redis_url):
    # Redis keeps the entry (its clock is not moved): only the check on the hit refuses it.
    a = make_app(REDIS_URL=redis_url, RATELIMIT_ENABLED=False, TOKEN_CACHE_SECONDS=3600)
    user = make_user(a)
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        token = make_token(a, user, ["account:read"], expires_in_days=1)
        assert status(a, token) == 200
        clock.shift(dt.timedelta(days=1) - dt.timedelta(seconds=5))
        with statements(a) as seen:
            assert status(a, token) == 200
        assert not any("auth_personal_access_tokens" in s for s in seen if "SELECT" in s)
        clock.shift(dt.timedelta(seconds=6))
        assert status(a, token) == 401


def test_entries_live_no_longer_than_the_token(make_app, redis_url):
    import redis

    a = make_app(REDIS_URL=redis_url, RATELIMIT_ENABLED=False, TOKEN_CACHE_SECONDS=3600)
    user = make_user(a)
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        token = make_token(a, user, ["account:read"], expires_in_days=1)
        clock.shift(dt.timedelta(days=1) - dt.timedelta(seconds=30))
        assert status(a, token) == 200
    ttl = redis.Redis.from_url(redis_url).pttl(
        stored_key(f"auth:pat:{tokens.secrets.digest(token)}")
    )
    assert 0 < ttl <= 30_000


def test_last_use_is_written_once_a_minute_with_a_warm_cache(instances):
    a, b = instances
    user = make_user(a)
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        token = make_token(a, user, ["account:read"])
        assert status(b, token) == 200
        with statements(b) as seen:
            clock.shift(30)
            assert status(b, token) == 200
        assert not any(s.lstrip().upper().startswith("UPDATE auth_personal") for s in seen)
        with statements(b) as seen:
            clock.shift(31)
            assert status(b, token) == 200
        assert sum(s.lstrip().startswith("UPDATE auth_personal") for s in seen) == 1
        with a.app_context():
            used = db.session.scalar(sa.select(PersonalAccessToken.last_used_at))
        assert used == dt.datetime.now(dt.UTC).replace(microsecond=used.microsecond)


# -- OAuth tokens ------------------------------------------------------------------------------


def machine_app(a, owner, scopes=("apps:read",)):
    """A confidential app of ``owner`` allowed the client-credentials grant; its JSON."""
    body = {
        "name": "Rover",
        "client_type": "confidential",
        "redirect_uris": [],
        "scopes": list(scopes),
        "grant_types": ["client_credentials"],
    }
    headers = bearer(make_token(a, owner, ["apps:read", "apps:write", *scopes]))
    response = a.test_client().post("/api/v1/apps", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json, headers


def client_token(app, machine):
    raw = f"{machine['client_id']}:{machine['client_secret']}".encode()
    response = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "apps:read"},
        headers={"Authorization": "Basic " + base64.b64encode(raw).decode()},
    )
    assert response.status_code == 200, response.json
    return response.json["access_token"]


def app_status(app, token):
    # An app's own token is valid (not 401) but has no apps of its own to list (403).
    return status(app, token, "/api/v1/apps")


def test_an_oauth_token_revoked_on_one_instance_fails_on_the_other(instances):
    a, b = instances
    machine, _ = machine_app(a, make_user(a))
    token = client_token(a, machine)
    assert app_status(b, token) == 403
    with statements(b) as seen:
        assert app_status(b, token) == 403
    assert not any("auth_oauth_tokens" in s for s in seen)
    raw = f"{machine['client_id']}:{machine['client_secret']}".encode()
    revoked = a.test_client().post(
        "/oauth/revoke",
        data={"token": token},
        headers={"Authorization": "Basic " + base64.b64encode(raw).decode()},
    )
    assert revoked.status_code == 200
    assert app_status(b, token) == 401


def test_deleting_an_app_is_seen_at_once(instances):
    a, b = instances
    machine, headers = machine_app(a, make_user(a))
    token = client_token(a, machine)
    assert app_status(b, token) == 403
    etag = a.test_client().get(f"/api/v1/apps/{machine['id']}", headers=headers).headers["ETag"]
    deleted = a.test_client().delete(
        f"/api/v1/apps/{machine['id']}", headers={**headers, "If-Match": etag}
    )
    assert deleted.status_code == 204, deleted.json
    assert app_status(b, token) == 401


def test_an_apps_secret_rotation_or_scope_change_starts_a_new_generation(instances):
    a, b = instances
    owner = make_user(a)
    machine, headers = machine_app(a, owner, scopes=("apps:read", "account:read"))
    token = client_token(a, machine)
    assert app_status(b, token) == 403
    before = generation(a)
    rotated = a.test_client().post(f"/api/v1/apps/{machine['id']}/secret", headers=headers)
    assert rotated.status_code == 200, rotated.json
    assert generation(a) != before
    before = generation(a)
    with a.app_context():
        apps.update_app(
            apps.get_app(db.session.get(User, owner.id), machine["id"]), {"scopes": ["apps:read"]}
        )
        db.session.commit()
    assert generation(a) != before
    with statements(b) as seen:
        assert app_status(b, token) == 403  # still valid: checked again in the database
    assert any("auth_oauth_tokens" in s for s in seen)


def test_without_a_usable_generation_file_tokens_are_checked_in_the_database(make_app, caplog):
    a = make_app()
    blocked = Path(a.config["MARS"]["INSTANCE_PATH"], token_cache.GENERATION_FILE)
    blocked.mkdir()  # a directory where the file should be: it cannot be opened
    token = make_token(a, make_user(a), ["account:read"])
    with caplog.at_level(logging.ERROR, logger="mars_server.auth.token_cache"):
        for _ in range(3):
            assert status(a, token) == 200
        with statements(a) as seen:
            assert status(a, token) == 200
    assert any("auth_personal_access_tokens" in s for s in seen)
    reports = [r for r in caplog.records if r.name == "mars_server.auth.token_cache"]
    assert len(reports) == 1


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda user: tokens.revoke_issued_by("some-app"), id="revoke_issued_by"),
        pytest.param(lambda user: oauth.revoke_family("fam_1"), id="revoke_family"),
        pytest.param(
            lambda user: db.session.execute(sa.delete(UserRole).where(UserRole.user_id == user.id)),
            id="roles_deleted_by_statement",
        ),
        pytest.param(lambda user: db.session.delete(user), id="user_deleted"),
        pytest.param(
            lambda user: db.session.add(UserRole(user_id=user.id, role="admin")), id="role_added"
        ),
    ],
)
def test_every_change_that_affects_a_check_starts_a_new_generation(instances, change):
    a, _ = instances
    user = make_user(a)
    before = generation(a)
    with a.app_context():
        change(db.session.get(User, user.id))
        assert generation(a) == before  # not before the commit
        db.session.commit()
    assert generation(a) != before


# -- with Redis: entries kept in each process, the generation followed through tracking --


@pytest.fixture
def redis_pair(make_app, redis_url):
    settings = {"RATELIMIT_ENABLED": False, "REDIS_URL": redis_url}
    return make_app(**settings), make_app(**settings)


def redis_reads(app, monkeypatch):
    """Count the reads ``app``'s cache sends to Redis."""
    with app.app_context():
        backend = token_cache.token_cache().namespace.cache.backend
    calls = []
    real = backend.get_many

    def counted(keys):
        calls.append(list(keys))
        return real(keys)

    monkeypatch.setattr(backend, "get_many", counted)
    return calls


def revoke_first_token(app, user_id):
    with app.app_context():
        pat = db.session.scalars(
            sa.select(PersonalAccessToken).where(PersonalAccessToken.user_id == user_id)
        ).first()
        pat.revoked_at = tokens.utcnow()
        db.session.commit()


def test_with_redis_a_warm_token_costs_no_round_trip(redis_pair, monkeypatch):
    a, _ = redis_pair
    token = make_token(a, make_user(a), ["account:read"])
    first = check(a, token)
    reads = redis_reads(a, monkeypatch)
    with statements(a) as seen:
        for _ in range(3):
            assert check(a, token) == first
    assert (seen, reads) == ([], [])


def test_another_instances_entry_is_used_after_one_read(redis_pair, monkeypatch):
    a, b = redis_pair
    token = make_token(a, make_user(a), ["account:read"])
    check(a, token)  # stored in Redis by a
    reads = redis_reads(b, monkeypatch)
    with statements(b) as seen:
        for _ in range(3):
            check(b, token)
    assert seen == []
    assert len(reads) == 1  # then kept in b's memory


def tracking_connection_of(app):
    with app.app_context():
        tracked = token_cache.token_cache()._tracked
    assert tracked is not None and tracked._conn is not None
    return tracked


def test_a_revocation_is_seen_at_once_by_an_instance_whose_tracking_connection_died(
    redis_pair, redis_url
):
    import redis

    a, b = redis_pair
    user = make_user(a)
    token = make_token(a, user, ["account:read"])
    assert status(b, token) == 200
    assert status(b, token) == 200
    tracked = tracking_connection_of(b)
    # Redis drops the connection (a restart, a proxy's idle timeout): the reports it would
    # have carried are lost, so b must not trust what it knows.
    server = redis.Redis.from_url(redis_url)
    subscribers = [c for c in server.client_list() if c.get("cmd") == "subscribe"]
    assert subscribers
    for client in subscribers:
        server.client_kill_filter(_id=client["id"])
    revoke_first_token(a, user.id)
    assert status(b, token) == 401
    assert tracked._known is None or tracked._conn is not None  # nothing kept untracked


def test_a_silent_tracking_connection_is_trusted_for_a_second_at_most(redis_pair, monkeypatch):
    a, b = redis_pair
    user = make_user(a)
    token = make_token(a, user, ["account:read"])
    assert status(b, token) == 200
    tracked = tracking_connection_of(b)
    monkeypatch.setattr(tracked._conn, "can_read", lambda timeout=0: False)  # hears nothing
    revoke_first_token(a, user.id)
    assert status(b, token) == 200  # b was not told
    real = time.monotonic
    monkeypatch.setattr(
        token_cache, "time", type("Clock", (), {"monotonic": staticmethod(lambda: real() + 1.5)})
    )
    assert status(b, token) == 401


def test_a_forked_worker_follows_the_generation_on_a_connection_of_its_own(redis_pair, monkeypatch):
    a, _ = redis_pair
    token = make_token(a, make_user(a), ["account:read"])
    check(a, token)
    tracked = tracking_connection_of(a)
    parent = tracked._conn
    monkeypatch.setattr(token_cache.os, "getpid", lambda: tracked._pid + 1)
    check(a, token)
    assert tracked._conn is not parent and tracked._conn is not None
    parent.disconnect()


def test_an_entry_forged_in_redis_is_refused(redis_pair, redis_url, caplog):
    """Write access to Redis is not a way in: entries carry a MAC under MARS's secret key."""
    import redis

    a, _ = redis_pair
    admin = make_user(a, roles=("admin",))
    token = make_token(a, admin, ["users:read"])
    assert status(a, token, "/api/v1/users") == 200
    made_up = token[:-8] + "AAAAAAAA"  # never issued
    server = redis.Redis.from_url(redis_url)
    real = server.get(stored_key(f"auth:pat:{tokens.secrets.digest(token)}"))
    server.set(stored_key(f"auth:pat:{tokens.secrets.digest(made_up)}"), real)  # a copied MAC
    forged = dict(json.loads(json.loads(real)["p"]))
    forged_key = stored_key(f"auth:pat:{tokens.secrets.digest(made_up + 'x')}")
    server.set(forged_key, json.dumps({"p": json.dumps(forged), "m": "0" * 64}))
    with caplog.at_level(logging.WARNING, logger="mars_server.auth.token_cache"):
        assert status(a, made_up, "/api/v1/users") == 401
        assert status(a, made_up + "x", "/api/v1/users") == 401
    assert "failed its integrity check" in caplog.text


def test_a_revocation_reaches_redis_during_the_caches_back_off(redis_pair, monkeypatch):
    """After one failed call the cache leaves Redis alone for a second; a new generation is
    written regardless, and tried again when a call fails."""
    a, b = redis_pair
    user = make_user(a)
    token = make_token(a, user, ["account:read"])
    assert status(b, token) == 200
    with a.app_context():
        backend = token_cache.token_cache().namespace.cache.backend
    backend._down_until = time.monotonic() + 60
    real_set, failures = backend.client.set, []

    def flaky(*args, **kwargs):
        if not failures:
            failures.append(args[0])
            raise redis_errors.ConnectionError("a blip")
        return real_set(*args, **kwargs)

    monkeypatch.setattr(backend.client, "set", flaky)
    revoke_first_token(a, user.id)
    assert failures
    assert status(b, token) == 401


def test_a_redis_that_refuses_tracking_is_logged_once_and_tokens_still_checked(
    redis_pair, monkeypatch, caplog
):
    """Say an ACL forbids CLIENT TRACKING: every check reads the generation from Redis, and
    the log says so once, not at every retry."""
    a, b = redis_pair
    user = make_user(a)
    token = make_token(a, user, ["account:read"])
    with b.app_context():
        tracked = token_cache.token_cache()._tracked

    def refused(*_args, **_kwargs):
        raise redis_errors.ResponseError("NOPERM this user has no permissions to run 'client'")

    monkeypatch.setattr(token_cache.redis.ConnectionPool, "from_url", refused)
    with caplog.at_level(logging.WARNING, logger="mars_server.auth.token_cache"):
        for _ in range(3):
            assert status(b, token) == 200
            tracked._retry_at = 0  # as if the back-off had passed
        revoke_first_token(a, user.id)
        assert status(b, token) == 401
    warnings = [r for r in caplog.records if "cannot follow" in r.getMessage()]
    assert len(warnings) == 1
