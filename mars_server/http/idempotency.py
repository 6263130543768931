"""``Idempotency-Key`` on POST: the same key and body replay the first response.

The key is claimed in its own short transaction before the view runs, so a concurrent
duplicate finds it taken (409) however the view's own transaction ends. A response below
500 is stored for replay, but a 429, which did nothing: it and a 5xx free the key so the
client may retry. A claim whose request died (no response stored after
:data:`ABANDONED_AFTER`) may be taken over.

What is stored reveals nothing: the body of every stored response is sealed
(:func:`mars_server.crypto.seal`), whether or not its operation says it carries a secret
(a new token, an app's or a webhook's secret), so no operation can forget to; the request's
fingerprint is a keyed digest, since a request body may hold a password.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import cast

import sqlalchemy as sa
from flask import Response, current_app, g, has_request_context, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mars_server.crypto import InvalidToken, keyed_digest, open_sealed, seal
from mars_server.db import db, utcnow
from mars_server.http.problems import PROBLEM_TYPE_PREFIX, BadRequest, Conflict, MarsError
from mars_server.http.security import current_actor
from mars_server.http.spec import is_api_path
from mars_server.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
ABANDONED_AFTER = dt.timedelta(minutes=5)
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_REPLAYED_HEADERS = ("Content-Type", "Location", "ETag", "Link", "Retry-After")


class KeyReused(MarsError):
    status = 422
    type_ = PROBLEM_TYPE_PREFIX + "idempotency-key-reused"
    title = "This Idempotency-Key was used for another request."


class ReplayUnavailable(Conflict):
    """The stored response cannot be opened any more (``MARS_SECRET_KEY`` was replaced)."""

    type_ = PROBLEM_TYPE_PREFIX + "idempotency-replay-unavailable"
    title = "The first response to this Idempotency-Key cannot be replayed."


class KeyInUse(Conflict):
    """The first request with this key is still running: try again (``Retry-After``)."""

    type_ = PROBLEM_TYPE_PREFIX + "idempotency-key-in-use"
    title = "A request with this Idempotency-Key is still in progress."

    def __init__(self) -> None:
        super().__init__(
            "Try again in a moment: you will get its response.", headers={"Retry-After": "1"}
        )


def _owner() -> str:
    """Whose keys these are: the caller (a user, through a given app or their own tokens, or
    an app acting for itself) with what its credential allows, not the credential itself.
    A client that renews its access token between two tries of one request is still the
    same caller, and must get the replay; a token allowed less never sees what one allowed
    more was answered (the replay comes before the operation's own scope check)."""
    credentials = request.headers.get("Authorization")
    if not credentials:
        # Callers without credentials are told apart by their address: one never gets the
        # replay of another's request that happened to use the same key.
        return keyed_digest(b"anonymous\0" + (request.remote_addr or "").encode())
    try:
        actor = current_actor()
    except MarsError:  # bad credentials: the operation itself answers that
        actor = None
    if actor is None:  # credentials no one knows: never stored, even as a plain digest
        return keyed_digest(b"owner\0" + credentials.encode())
    scopes = " ".join(sorted(actor.scopes))
    caller = f"{actor.kind}:{actor.id}:{actor.client_id or ''}:{scopes}"
    return hashlib.sha256(caller.encode()).hexdigest()


def _fingerprint() -> str:
    """What makes a request "the same": method, path, query and body.

    A JSON body counts by its meaning, not its bytes: a retry that re-serialises the same
    document with other spacing or key order is still the same request.
    """
    parts = [request.method.encode(), request.path.encode(), request.query_string]
    body = request.get_data(cache=True)
    document = request.get_json(silent=True) if body else None
    if document is not None:
        body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return keyed_digest(b"\0".join([b"request", *parts, body]))


def _opened(sealed: bytes | None) -> bytes | None:
    """The stored body, opened; ``None`` when it cannot be (``MARS_SECRET_KEY`` changed)."""
    try:
        return open_sealed(sealed.decode("ascii")) if sealed else b""
    except (InvalidToken, UnicodeDecodeError):
        return None


def _replay(row: IdempotencyKey, body: bytes) -> Response:
    response = Response(body, status=row.status_code)
    for name, value in (row.response_headers or {}).items():
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response


@sa.event.listens_for(Session, "after_commit")
def _note_commit(session: Session) -> None:
    """Remember that this request's changes are durable: its key must then never be freed."""
    if has_request_context():
        g.mars_committed = True


def claim_key() -> Response | None:
    """before_request: claim the key, or answer with the replay or the problem."""
    key = request.headers.get(HEADER)
    if (
        key is None
        or request.method != "POST"
        or not is_api_path(request.path)
        or request.url_rule is None
    ):
        return None
    if not _VALID_KEY.match(key):
        raise BadRequest(f"{HEADER} must be 1 to 255 visible ASCII characters.")
    owner, fingerprint, now = _owner(), _fingerprint(), utcnow()
    table = cast("sa.Table", IdempotencyKey.__table__)
    ttl = dt.timedelta(seconds=current_app.config["MARS"]["IDEMPOTENCY_TTL_SECONDS"])
    with db.engine.begin() as conn:
        row = conn.execute(
            sa.select(table).where(table.c.owner == owner, table.c.key == key)
        ).one_or_none()
        if row is not None:
            if row.expires_at <= now or (
                row.state == "processing" and row.created_at <= now - ABANDONED_AFTER
            ):
                conn.execute(table.delete().where(table.c.id == row.id))
            elif row.state == "completed":
                body = _opened(row.response_body)
                if body is None:
                    raise ReplayUnavailable(
                        "The server's key changed since. Check whether the first request "
                        "took effect before you send it again with a new key."
                    )
                if row.fingerprint != fingerprint:
                    raise KeyReused("Use a new key for a new request.")
                return _replay(IdempotencyKey(**row._asdict()), body)
            elif row.fingerprint != fingerprint:
                raise KeyReused("Use a new key for a new request.")
            else:
                raise KeyInUse()
    try:
        with db.engine.begin() as conn:
            conn.execute(
                table.insert().values(
                    owner=owner,
                    key=key,
                    fingerprint=fingerprint,
                    state="processing",
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
    except IntegrityError:
        raise KeyInUse() from None
    g.idempotency_claim = (owner, key)
    return None


def store_response(response: Response) -> Response:
    """after_request: keep the response for replay, or free the key after a 5xx.

    A 5xx after the request's changes were committed is kept too: freeing the key then
    would let a retry do the work twice.
    """
    claim = g.pop("idempotency_claim", None)
    if claim is None:
        return response
    # The view is done: give its connection back before taking another, so a busy pool
    # (or SQLite's single writer lock) never waits on itself.
    db.session.remove()
    table = cast("sa.Table", IdempotencyKey.__table__)
    where = (table.c.owner == claim[0]) & (table.c.key == claim[1])
    with db.engine.begin() as conn:
        # A 429 did nothing: the key is freed for the retry Retry-After invites.
        # So is a GraphQL answer whose errors say the same (``mars_retry_may_succeed``).
        retry_may_succeed = response.status_code >= 500 or response.status_code == 429
        if (retry_may_succeed or g.get("mars_retry_may_succeed")) and not g.get("mars_committed"):
            conn.execute(table.delete().where(where))
        else:
            headers = {
                name: response.headers[name]
                for name in _REPLAYED_HEADERS
                if name in response.headers
            }
            conn.execute(
                table.update()
                .where(where)
                .values(
                    state="completed",
                    status_code=response.status_code,
                    response_headers=headers,
                    response_body=seal(response.get_data()).encode("ascii"),
                )
            )
    return response


def release_unfinished(exc: BaseException | None) -> None:
    """teardown: a request that never produced a response frees its key."""
    claim = g.pop("idempotency_claim", None)
    if claim is not None:
        table = cast("sa.Table", IdempotencyKey.__table__)
        with db.engine.begin() as conn:
            conn.execute(
                table.delete().where((table.c.owner == claim[0]) & (table.c.key == claim[1]))
            )


def purge_expired() -> int:
    """Delete expired keys; returns how many."""
    table = cast("sa.Table", IdempotencyKey.__table__)
    with db.engine.begin() as conn:
        return conn.execute(table.delete().where(table.c.expires_at <= utcnow())).rowcount
