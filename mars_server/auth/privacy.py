"""A person's rights over their data, for their account: the export of everything MARS
stores about them, and the account's deletion (docs/privacy.md).

- Export: ``POST /api/v1/me/export`` queues the ``auth.export`` job, which asks every plugin
  (``mars_server.privacy.export_zip``), encrypts the ZIP under a key derived from a fresh
  link token, and mails the person that link; an in-app notification says it is ready. The
  link works once, until ``export_link_hours``; the hourly ``auth.privacy`` job deletes
  what was not downloaded in time.
- Deletion: ``DELETE /api/v1/me`` (the current password, or a fresh single sign-on) sets
  the account's ``deletion_due_at`` ``deletion_grace_days`` ahead and revokes every token;
  signing in meanwhile cancels it. The hourly ``auth.privacy`` job then erases the account
  in every plugin (``mars_server.privacy.erase``). Something the person must do first (a
  project only they own, with other members) is a 409 at the request, and postpones the
  erasure by a day (with a mail) if it appears during the grace period.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mars_server import operations, plugin_settings, privacy, public_url
from mars_server.auth import accounts, apps, secrets, signin
from mars_server.auth.models import (
    AuthorizationCode,
    DataExport,
    EmailToken,
    OAuthClient,
    OAuthConsent,
    OAuthToken,
    PersonalAccessToken,
    User,
)
from mars_server.auth.throttle import Throttled
from mars_server.db import db, utcnow
from mars_server.events import audit, emit, enqueue
from mars_server.hookspecs import EventType, NotificationDraft, PersonalData
from mars_server.http import BadRequest, Forbidden, ValidationFailed
from mars_server.mail import send_mail
from mars_server.metrics import purged
from mars_server.state import mars_state

if TYPE_CHECKING:
    from mars_server.events import Event
    from mars_server.http import Actor
    from mars_server.operations import Operation

log = logging.getLogger(__name__)

EXPORT_TASK = "auth.export"
EXPORT_KIND = "account.export"
PRIVACY_TASK = "auth.privacy"
EXPORT_READY = "account.export_ready"
#: How recent a single sign-on must be to delete an account that has no password.
FRESH_SIGN_IN = dt.timedelta(minutes=10)
#: How long an erasure waits when something blocks it at its time.
BLOCKED_RETRY = dt.timedelta(days=1)
ERASE_BATCH = 50
#: Exports a person may ask for in 24 hours.
EXPORTS_PER_DAY = 5
INVALID_EXPORT_LINK = "This download link is invalid, used or expired; ask for a new export."


def _settings() -> dict[str, Any]:
    return plugin_settings("auth")


# --- Export -------------------------------------------------------------------------------------


def _export_key(token: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"mars-server", info=b"data export"
    ).derive(token.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def request_export(user: User) -> Operation:
    """Queue an export of ``user``'s data (the one under way, if there is one), as a
    long-running operation; committed."""
    pending = db.session.scalar(
        sa.select(DataExport).where(DataExport.user_id == user.id, DataExport.status == "pending")
    )
    if pending is not None and pending.operation_id:
        return operations.get_for(user.id, pending.operation_id)
    since = utcnow() - dt.timedelta(days=1)
    made = db.session.scalars(
        sa.select(DataExport.created_at)
        .where(DataExport.user_id == user.id, DataExport.created_at > since)
        .order_by(DataExport.created_at)
    ).all()
    if len(made) >= EXPORTS_PER_DAY:
        wait = made[-EXPORTS_PER_DAY] + dt.timedelta(days=1) - utcnow()
        raise Throttled(
            max(1, int(wait.total_seconds())),
            f"You asked for {EXPORTS_PER_DAY} exports in the last 24 hours; the links are in "
            "your mail. Try again later.",
        )
    row = DataExport(user_id=user.id, status="pending")
    db.session.add(row)
    db.session.flush()
    operation = operations.start(EXPORT_KIND, EXPORT_TASK, owner_id=user.id, export_id=row.id)
    row.operation_id = operation.id
    audit("account.export_requested", target=user.id, export_id=row.id)
    db.session.commit()
    return operation


def get_export(user: User, export_id: str) -> DataExport:
    from mars_server.http import NotFound

    row = db.session.get(DataExport, export_id)
    if row is None or row.user_id != user.id:
        raise NotFound("No export of yours has this id.")
    return row


def list_exports(user: User) -> list[DataExport]:
    return list(
        db.session.scalars(
            sa.select(DataExport)
            .where(DataExport.user_id == user.id)
            .order_by(DataExport.created_at.desc())
            .limit(20)
        )
    )


def build_export(operation_id: str, export_id: str) -> str | None:
    """The ``auth.export`` job: the ZIP, encrypted under the link's token; the person is
    mailed the link and notified. Commits with the job; its operation's result is the
    export's status."""
    row = db.session.get(DataExport, export_id)
    if row is None or row.status != "pending":
        return None
    user = db.session.get(User, row.user_id)
    if user is None:
        return None
    operations.progress(operation_id, 0.1)
    data = privacy.export_zip(user.id)
    token = secrets.new_opaque_token()
    hours = _settings()["export_link_hours"]
    now = utcnow()
    row.content = _export_key(token).encrypt(data)
    row.size = len(data)
    row.digest = secrets.digest(token)
    row.status, row.ready_at, row.expires_at = "ready", now, now + dt.timedelta(hours=hours)
    emit(
        EXPORT_READY,
        {"id": row.id, "expires_at": row.expires_at, "size": row.size},
        audience=[user.id],
        target=user.id,
    )
    send_mail(
        user.email,
        "data_export",
        display_name=user.display_name or user.email,
        download_url=f"{public_url('/accounts/export')}?{urlencode({'token': token})}",
        expires_in_hours=hours,
        size_kb=max(1, round(len(data) / 1024)),
    )
    return f"/api/v1/me/exports/{row.id}"


def export_link_is_usable(token: str) -> bool:
    return _usable_export(token) is not None


def _usable_export(token: str) -> DataExport | None:
    row = db.session.scalar(sa.select(DataExport).where(DataExport.digest == secrets.digest(token)))
    if row is None or row.status != "ready" or row.expires_at is None or row.expires_at <= utcnow():
        return None
    return row


def download_export(token: str) -> bytes:
    """The ZIP behind a download link, which then stops working; committed."""
    row = _usable_export(token)
    if row is None or row.content is None:
        raise BadRequest(INVALID_EXPORT_LINK)
    try:
        data = _export_key(token).decrypt(row.content)
    except InvalidToken:
        raise BadRequest(INVALID_EXPORT_LINK) from None
    # Once: of two downloads at the same moment, only the one that changes the row sends it.
    taken = db.session.execute(
        sa.update(DataExport)
        .where(DataExport.id == row.id, DataExport.status == "ready")
        .values(content=None, status="downloaded", downloaded_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not taken:
        db.session.rollback()
        raise BadRequest(INVALID_EXPORT_LINK)
    audit("account.export_downloaded", target=row.user_id, export_id=row.id)
    db.session.commit()
    return data


def export_for_operator(user: User) -> bytes:
    """``mars users export``: the ZIP now, audited; committed."""
    data = privacy.export_zip(user.id)
    audit("account.exported", target=user.id, size=len(data))
    db.session.commit()
    return data


def expire_exports(now: dt.datetime | None = None) -> int:
    """Delete the content of exports whose link expired, and fail those stuck for a day."""
    now = now or utcnow()
    expired = db.session.execute(
        sa.update(DataExport)
        .where(DataExport.status == "ready", DataExport.expires_at <= now)
        .values(status="expired", content=None)
    ).rowcount  # type: ignore[attr-defined]
    db.session.execute(
        sa.update(DataExport)
        .where(DataExport.status == "pending", DataExport.created_at <= now - dt.timedelta(days=1))
        .values(status="failed", error="The export did not finish; ask for a new one.")
    )
    return int(expired)


# --- Deletion -----------------------------------------------------------------------------------


def signs_in_elsewhere(user: User) -> bool:
    """An account without a password of its own (single sign-on)."""
    return user.password_hash is None or bool(
        mars_state().plugins.password_sign_in_refused(user.email)
    )


def _signed_in_at(actor: Actor) -> dt.datetime | None:
    """When the person signed in to get the OAuth token ``actor`` calls with, if the token is
    the organisation's own app's (the website's): an app the person just allowed has a fresh
    sign-in too, and must not be able to delete their account with it."""
    if not actor.credential_id or actor.client_id is None:
        return None
    token = db.session.get(OAuthToken, actor.credential_id)
    if token is None:
        return None
    client = db.session.scalar(
        sa.select(OAuthClient).where(OAuthClient.client_id == token.client_id)
    )
    if client is None or not client.first_party:
        return None
    return db.session.scalar(
        sa.select(AuthorizationCode.auth_time).where(AuthorizationCode.family_id == token.family_id)
    )


def _confirm(user: User, actor: Actor, password: str | None, address: str | None) -> None:
    if signs_in_elsewhere(user):
        signed_in = _signed_in_at(actor)
        if signed_in is None or signed_in < utcnow() - FRESH_SIGN_IN:
            raise Forbidden(
                "Your account signs in through single sign-on: sign in to the website again (it "
                "asks with prompt=login) and delete it there within 10 minutes."
            )
        return
    if not password:
        raise ValidationFailed({"password": "Enter your password to delete your account."})
    if not signin.confirm_password(user, password, address):
        db.session.commit()  # the failure's count
        raise ValidationFailed({"password": "This is not your password."})


def request_deletion(
    user: User, actor: Actor, password: str | None, address: str | None
) -> dt.datetime:
    """Schedule ``user``'s erasure after the grace period; every token is revoked now and
    the person is mailed how to cancel. Returns when it is due; committed."""
    _confirm(user, actor, password, address)
    return schedule_deletion(user)


def _sign_in_url() -> str:
    from flask import current_app

    return str(current_app.config["MARS"]["WEBSITE_URL"] or public_url("/"))


def schedule_deletion(user: User, days: int | None = None) -> dt.datetime:
    """Schedule the erasure after ``days`` (default: the grace period); every token is
    revoked now and the person is mailed how to cancel. Committed. ``mars users erase``
    calls it directly; :class:`~mars_server.privacy.DeletionBlocked` when something must
    be done first."""
    reasons = privacy.blockers(user.id)
    if reasons:
        raise privacy.DeletionBlocked(reasons)
    days = _settings()["deletion_grace_days"] if days is None else days
    due = utcnow() + dt.timedelta(days=days)
    user.deletion_due_at = due
    accounts.revoke_all_tokens(user, reason="deletion_requested", commit=False)
    audit("account.deletion_requested", target=user.id, due_at=due)
    send_mail(
        user.email,
        "account_deletion",
        display_name=user.display_name or user.email,
        due_date=due.strftime("%d %B %Y, %H:%M UTC"),
        days=days,
        sign_in_url=_sign_in_url(),
    )
    if days == 0:
        enqueue(PRIVACY_TASK)
    db.session.commit()
    return due


def cancel_deletion(user: User) -> None:
    """The person signed in during the grace period: their account stays (caller commits)."""
    if user.deletion_due_at is None:
        return
    user.deletion_due_at = None
    audit("account.deletion_cancelled", target=user.id)
    send_mail(
        user.email, "account_deletion_cancelled", display_name=user.display_name or user.email
    )


def erase_now(user: User) -> dict[str, list[str]]:
    """Erase ``user`` in every plugin at once (the operator's ``--now``, and the job when the
    time is up); the person is mailed that it is done. Committed."""
    email, name = user.email, user.display_name or user.email
    done = privacy.erase(user.id)
    send_mail(email, "account_erased", display_name=name)
    db.session.commit()
    return done


def erase_due(now: dt.datetime | None = None) -> int:
    """Erase the accounts whose time has come, one transaction each; returns how many."""
    now = now or utcnow()
    erased = 0
    due = list(
        db.session.scalars(
            sa.select(User.id)
            .where(User.deletion_due_at.is_not(None), User.deletion_due_at <= now)
            .order_by(User.deletion_due_at)
            .limit(ERASE_BATCH)
        )
    )
    for user_id in due:
        # Locked, and asked again: a sign-in that committed meanwhile cancelled it, and one
        # that comes now waits for the erasure (and then finds no account).
        user = db.session.get(User, user_id, with_for_update=True, populate_existing=True)
        if user is None or user.deletion_due_at is None or user.deletion_due_at > now:
            db.session.rollback()
            continue
        try:
            erase_now(user)
        except privacy.DeletionBlocked as blocked:
            db.session.rollback()
            _postpone(user_id, now, "blocked", blocked.reasons)
        except Exception:
            # One account must not hold back the others: it is tried again tomorrow.
            log.exception("the erasure of %s failed", user_id)
            db.session.rollback()
            _postpone(user_id, now, "failed", [])
        else:
            erased += 1
    return erased


def _postpone(user_id: str, now: dt.datetime, why: str, reasons: list[str]) -> None:
    user = db.session.get(User, user_id)
    if user is None:
        return
    user.deletion_due_at = now + BLOCKED_RETRY
    audit("account.deletion_postponed", target=user.id, why=why, reasons=len(reasons))
    if reasons:
        send_mail(
            user.email,
            "account_deletion_blocked",
            display_name=user.display_name or user.email,
            reasons=reasons,
        )
    db.session.commit()


def purge_ended(now: dt.datetime | None = None) -> dict[str, int]:
    """Delete credentials that ended ``records_retention_days`` ago: revoked or expired
    tokens, e-mailed links and authorization codes, finished exports. Returns the counts."""
    cutoff = (now or utcnow()) - dt.timedelta(days=_settings()["records_retention_days"])
    ended = {
        "personal_access_tokens": sa.delete(PersonalAccessToken).where(
            sa.or_(PersonalAccessToken.revoked_at < cutoff, PersonalAccessToken.expires_at < cutoff)
        ),
        "oauth_tokens": sa.delete(OAuthToken).where(
            sa.or_(
                OAuthToken.revoked_at < cutoff,
                sa.func.coalesce(OAuthToken.refresh_expires_at, OAuthToken.access_expires_at)
                < cutoff,
            )
        ),
        "authorization_codes": sa.delete(AuthorizationCode).where(
            AuthorizationCode.expires_at < cutoff
        ),
        "email_links": sa.delete(EmailToken).where(EmailToken.expires_at < cutoff),
        "data_exports": sa.delete(DataExport).where(
            DataExport.created_at < cutoff, DataExport.status != "pending"
        ),
    }
    counts = {}
    for what, statement in ended.items():
        counts[what] = int(db.session.execute(statement).rowcount)  # type: ignore[attr-defined]
        purged(what, counts[what])
    return counts


def maintenance() -> None:
    """The hourly ``auth.privacy`` job: expired exports deleted, ended credentials purged,
    due accounts erased."""
    expire_exports()
    purge_ended()
    db.session.commit()
    if erase_due() == ERASE_BATCH:
        enqueue(PRIVACY_TASK)


# --- The auth plugin's answers to the personal-data hooks ---------------------------------------

INVENTORY = [
    PersonalData(
        what="the account: e-mail address, display name, status, roles, when it was made, "
        "changed and last signed in to, a password hash",
        where="auth_users, auth_user_roles",
        why="to sign the person in, write to them and decide what they may do",
        kept="until the account is erased",
        erasure="deleted",
    ),
    PersonalData(
        what="personal access tokens: name, first characters, scopes, times, the IP address "
        "and time of their last use (the token itself only as a hash)",
        where="auth_personal_access_tokens",
        why="to let the person's own programs call the API, and to show them where a token "
        "was last used",
        kept="while the token lives, then auth.records_retention_days (90) after it ends",
        erasure="deleted",
    ),
    PersonalData(
        what="OAuth: the apps the person registered, the apps they allowed and with which "
        "scopes, their tokens and authorization codes (as hashes)",
        where="auth_oauth_clients, auth_oauth_consents, auth_oauth_tokens, "
        "auth_authorization_codes",
        why="to let apps act for the person as far as they allowed",
        kept="tokens and codes auth.records_retention_days (90) after they end; apps and "
        "consents until deleted or withdrawn",
        erasure="deleted; the person's apps are deleted and stop working for everyone",
    ),
    PersonalData(
        what="e-mailed links (verification, password reset) as hashes, with their times",
        where="auth_email_tokens",
        why="to check the links sent",
        kept="auth.records_retention_days (90) after they expire",
        erasure="deleted",
    ),
    PersonalData(
        what="sign-in and e-mail limits: counters keyed by a digest of the e-mail address "
        "or IP address, never the address",
        where="auth_login_throttle",
        why="to stop password guessing and mail floods",
        kept="one window (minutes), then purged hourly",
        erasure="expire on their own within the hour",
    ),
    PersonalData(
        what="the person's data exports, encrypted under their download link",
        where="auth_data_exports",
        why="to give the person their data",
        kept="the file until downloaded or its link expires (auth.export_link_hours, 48); "
        "the record of it auth.records_retention_days (90)",
        erasure="deleted",
    ),
]


def _times(row: Any, *names: str) -> dict[str, Any]:
    return {name: getattr(row, name) for name in names}


def export(user_id: str) -> dict[str, Any]:
    user = db.session.get(User, user_id)
    if user is None:
        return {}
    tokens = db.session.scalars(
        sa.select(PersonalAccessToken).where(PersonalAccessToken.user_id == user_id)
    )
    owned = db.session.scalars(sa.select(OAuthClient).where(OAuthClient.owner_id == user_id))
    consents = db.session.scalars(sa.select(OAuthConsent).where(OAuthConsent.user_id == user_id))
    grants = db.session.scalars(sa.select(OAuthToken).where(OAuthToken.user_id == user_id))
    return {
        "account": {
            "id": user.id,
            "email": user.email,
            "display_name": user.display_name,
            "status": user.status,
            "roles": sorted(user.role_names),
            "has_password": user.password_hash is not None,
            **_times(user, "created_at", "updated_at", "last_login_at", "deletion_due_at"),
        },
        "personal_access_tokens": [
            {
                "id": t.id,
                "name": t.name,
                "hint": t.hint,
                "scopes": t.scopes.split(),
                "last_used_ip": t.last_used_ip,
                **_times(t, "created_at", "expires_at", "last_used_at", "revoked_at"),
            }
            for t in tokens
        ],
        "apps": [
            {
                "id": a.id,
                "client_id": a.client_id,
                "name": a.name,
                "client_type": a.client_type,
                "redirect_uris": a.redirect_uris,
                "scopes": a.scopes.split(),
                **_times(a, "created_at", "updated_at"),
            }
            for a in owned
        ],
        "apps_allowed": [
            {"client_id": c.client_id, "scopes": c.scope.split(), "granted_at": c.granted_at}
            for c in consents
        ],
        "oauth_grants": [
            {
                "client_id": g.client_id,
                "scopes": g.scope.split(),
                **_times(g, "issued_at", "access_expires_at", "refresh_expires_at", "revoked_at"),
            }
            for g in grants
        ],
    }


def erase(user_id: str) -> list[str]:
    user = db.session.get(User, user_id)
    if user is None:
        return []
    for app in db.session.scalars(sa.select(OAuthClient).where(OAuthClient.owner_id == user_id)):
        apps.delete_app(app, commit=False)
    counts = {}
    for label, model in (
        ("personal access tokens", PersonalAccessToken),
        ("OAuth tokens", OAuthToken),
        ("authorization codes", AuthorizationCode),
        ("consents", OAuthConsent),
        ("e-mailed links", EmailToken),
        ("data exports", DataExport),
    ):
        result = db.session.execute(sa.delete(model).where(model.user_id == user_id))
        counts[label] = result.rowcount  # type: ignore[attr-defined]
    db.session.delete(user)
    db.session.flush()
    lines = ["the account deleted"]
    lines += [f"{count} {label} deleted" for label, count in counts.items() if count]
    return lines


def blockers(user_id: str) -> list[str]:
    user = db.session.get(User, user_id)
    if user is not None and accounts.is_last_active_admin(user):
        return [
            "You are the only active admin: give the admin role to someone else first, "
            "so that somebody can still manage the accounts."
        ]
    return []


# --- The event the person is notified by ------------------------------------------------------


def _event_types() -> list[EventType]:
    import marshmallow as ma

    class ExportReady(ma.Schema):
        class Meta:
            ordered = True

        id = ma.fields.String(required=True, metadata={"description": "The export's id."})
        expires_at = ma.fields.AwareDateTime(required=True, format="iso")
        size = ma.fields.Integer(required=True, metadata={"description": "The ZIP's bytes."})

    return [
        EventType(
            EXPORT_READY,
            "Your data export is ready: the link to download it was e-mailed to you.",
            ExportReady,
            "account:read",
        )
    ]


EVENT_TYPES = _event_types()


def notifications(event: Event) -> list[NotificationDraft]:
    if event.type != EXPORT_READY or not event.audience:
        return []
    return [
        NotificationDraft(
            event.audience[0],
            "Your data export is ready",
            "We e-mailed you a link to download it. It works once, until "
            f"{str(event.payload['expires_at'])[:16].replace('T', ' ')} UTC.",
            None,
        )
    ]
