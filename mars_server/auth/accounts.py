"""Accounts: users, their passwords, statuses and roles. No HTTP here.

What the API, the pages and the ``mars`` commands call commits its change (the audit entry
with it); a refused change raises before anything is written. ``commit=False`` leaves the
commit to a caller's larger unit of work, as in :mod:`mars_server.resources`. The building
blocks that other services compose (:func:`create_user`, :func:`set_password`, ...) work in
their caller's transaction and say so.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mars_server.auth import passwords
from mars_server.auth.models import (
    ROLES,
    AuthorizationCode,
    OAuthToken,
    PersonalAccessToken,
    User,
    UserRole,
)

__all__ = ["User"]
from mars_server.db import db, utcnow
from mars_server.events import acting_as, audit
from mars_server.events import context as acting_context
from mars_server.http import BadRequest, Conflict, NotFound, ValidationFailed
from mars_server.http.problems import PROBLEM_TYPE_PREFIX

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    from mars_server.http import Page


def audit_as(
    actor_id: str | None, action: str, *, target: str | None = None, **details: Any
) -> None:
    """Record a security event whose actor is known here but not from the request's
    credentials: a user just signed in, or signed in to the OAuth pages by their session."""
    with acting_as(dataclasses.replace(acting_context.current(), actor_id=actor_id)):
        audit(action, target=target, **details)


def email_key(email: str) -> str:
    return email.strip().lower()


def find_user(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email_key == email_key(email)))


def get_user(user_id: str) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user {user_id!r}.")
    return user


def user_by_email(email: str) -> User:
    user = find_user(email)
    if user is None:
        raise NotFound(f"No user with the e-mail address {email!r}.")
    return user


def check_password_policy(password: str, *, email: str = "", field: str = "password") -> None:
    problems = passwords.password_problems(password, email=email)
    if problems:
        raise ValidationFailed({field: problems})


def create_user(
    email: str,
    *,
    password: str | None = None,
    display_name: str = "",
    status: str = "pending",
    roles: tuple[str, ...] = ("member",),
) -> User:
    """A new user, in the caller's transaction (flushed: it has its id); :class:`Conflict`
    when the address has an account."""
    if password is not None:
        check_password_policy(password, email=email)
    user = User(
        email=email.strip(),
        email_key=email_key(email),
        display_name=display_name,
        status=status,
        password_hash=passwords.hash_password(password) if password is not None else None,
    )
    user.roles = [UserRole(role=role) for role in roles]
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("An account with this e-mail address exists.") from None
    return user


def list_users(args: dict[str, Any]) -> Page[User]:
    from mars_server.http import paginate

    stmt = sa.select(User)
    if args.get("status"):
        stmt = stmt.where(User.status == args["status"])
    return paginate(stmt, User.id, args, name="users")


def revoke_all_tokens(user: User, *, reason: str = "revoked", commit: bool = True) -> int:
    """Revoke every personal access token and OAuth token of ``user``; return how many.

    Authorization codes not exchanged yet go too: one issued a moment before would
    otherwise bring a new token (used codes stay, for reuse detection). Browsers signed in
    to the OAuth pages are signed out.
    """
    now = utcnow()
    user.sign_in_stamp = secrets.token_hex(16)
    db.session.execute(
        sa.delete(AuthorizationCode).where(
            AuthorizationCode.user_id == user.id, AuthorizationCode.used_at.is_(None)
        )
    )
    counts: dict[str, int] = {}
    for kind, model in (
        ("personal_access_tokens", PersonalAccessToken),
        ("oauth_tokens", OAuthToken),
    ):
        result = db.session.execute(
            sa.update(model)
            .where(model.user_id == user.id, model.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        counts[kind] = result.rowcount  # type: ignore[attr-defined]
    count = sum(counts.values())
    if count:
        audit("auth.token_revoked", target=user.id, kind="all", reason=reason, **counts)
    if commit:
        db.session.commit()
    return count


def set_password(user: User, password: str, *, temporary: bool = False) -> None:
    """Replace the password, in the caller's transaction; every token of the user is revoked."""
    check_password_policy(password, email=user.email)
    user.password_hash = passwords.hash_password(password)
    user.must_change_password = temporary
    revoke_all_tokens(user, reason="password_set", commit=False)


def change_password(
    user: User, current: str, new: str, *, on_wrong_password: Callable[[], None] | None = None
) -> None:
    """Replace the password after checking the current one, in the caller's transaction
    (``on_wrong_password`` first counts a wrong one: see
    :func:`mars_server.auth.signin.change_password`, which commits)."""
    ok, _ = passwords.verify_password(user.password_hash, current)
    if not ok:
        if on_wrong_password is not None:
            on_wrong_password()
        raise ValidationFailed({"current_password": "This is not your password."})
    if secrets.compare_digest(current.encode(), new.encode()):
        raise ValidationFailed({"new_password": "Choose a new password."})
    check_password_policy(new, email=user.email, field="new_password")
    set_password(user, new)
    audit("auth.password_changed", target=user.id)


def temporary_password(user: User) -> str:
    """A one-time password the user must change at the next sign-in (in the caller's
    transaction)."""
    password = secrets.token_urlsafe(12)
    set_password(user, password, temporary=True)
    return password


class LastAdmin(Conflict):
    """The change would leave no active admin: nobody could manage accounts any more."""

    type_ = PROBLEM_TYPE_PREFIX + "last-admin"
    title = "This would leave no active admin."


def is_last_active_admin(user: User) -> bool:
    """Whether ``user`` is the only active user holding the admin role.

    Every change that may remove an active admin asks this first, inside its transaction.
    On PostgreSQL the admin role rows are locked (``FOR UPDATE``) before reading, so two
    such changes run one after the other: two admins taking each other's role at once
    cannot both succeed, as the second reads only once the first has committed (each
    statement of a READ COMMITTED transaction sees what was committed before it began).
    The answer comes from that read, not from the objects already loaded, which may be
    older. SQLite serialises writers anyway; ``with_for_update`` renders nothing there.
    """
    db.session.execute(
        sa.select(UserRole.user_id)
        .where(UserRole.role == "admin")
        .order_by(UserRole.user_id)  # one order for every locker: no deadlock
        .with_for_update()
    ).all()
    return db.session.scalars(_active_admin_ids().limit(2)).all() == [user.id]


def _active_admin_ids() -> sa.Select[str]:
    return (
        sa.select(User.id)
        .join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == "admin", User.status == "active")
    )


def count_active_admins() -> int:
    """How many active users hold the admin role."""
    return (
        db.session.scalar(sa.select(sa.func.count()).select_from(_active_admin_ids().subquery()))
        or 0
    )


def _keep_an_admin(user: User, doing: str, *, force: bool) -> bool:
    """Refuse ``doing`` to the last active admin unless ``force``; whether it was forced."""
    if not is_last_active_admin(user):
        return False
    if force:
        return True
    raise LastAdmin(
        f"{user.email} is the last active admin: {doing} would leave nobody to manage "
        "accounts. Grant the admin role to another active account first."
    )


def set_status(user: User, status: str, *, force: bool = False, commit: bool = True) -> None:
    """Enable or disable ``user``; disabling revokes every token they hold.

    Disabling the last active admin raises :class:`LastAdmin` (409), unless ``force``
    (the operator's ``mars users disable --force``).
    """
    if status not in ("active", "disabled"):
        raise BadRequest(f"Unknown status {status!r}.")
    forced = status == "disabled" and _keep_an_admin(user, "disabling them", force=force)
    previous, user.status = user.status, status
    if previous != status:
        action = "auth.user_disabled" if status == "disabled" else "auth.user_enabled"
        extra = {"last_admin": True} if forced else {}
        audit(action, target=user.id, previous_status=previous, **extra)
    if status == "disabled":
        revoke_all_tokens(user, reason="user_disabled", commit=False)
    if commit:
        db.session.commit()


def grant_role(user: User, role: str, *, commit: bool = True) -> bool:
    """Give ``user`` the role; False when they had it already."""
    if role not in ROLES:
        raise ValidationFailed({"role": f"Must be one of: {', '.join(ROLES)}."})
    granted = role not in user.role_names
    if granted:
        user.roles.append(UserRole(role=role))
        audit("auth.role_granted", target=user.id, role=role)
    if commit:
        db.session.commit()
    return granted


def revoke_role(user: User, role: str, *, force: bool = False, commit: bool = True) -> bool:
    """Take the role from ``user``; False when they did not have it.

    Taking the admin role from the last active admin raises :class:`LastAdmin` (409),
    unless ``force`` (the operator's ``mars users revoke-role --force``).
    """
    assignment = next((held for held in user.roles if held.role == role), None)
    if assignment is not None:
        forced = role == "admin" and _keep_an_admin(user, "taking their admin role", force=force)
        user.roles.remove(assignment)
        extra = {"last_admin": True} if forced else {}
        audit("auth.role_revoked", target=user.id, role=role, **extra)
    if commit:
        db.session.commit()
    return assignment is not None


#: what a user changes of their own account (``PATCH /me``)
PROFILE_FIELDS = frozenset({"display_name"})


def update_profile(user: User, changes: dict[str, Any]) -> User:
    """Set what ``user`` changed of their profile (:data:`PROFILE_FIELDS`); audited and
    committed."""
    unknown = sorted(changes.keys() - PROFILE_FIELDS)
    if unknown:
        raise ValidationFailed(dict.fromkeys(unknown, "Not a field of your profile."))
    for name, value in changes.items():
        setattr(user, name, value)
    audit("auth.profile_updated", target=user.id, changes=changes)
    db.session.commit()
    return user


def provision_user(
    email: str, *, password: str | None = None, display_name: str = "", admin: bool = False
) -> tuple[User, str | None]:
    """An active account made by an operator, without e-mail verification; audited and
    committed. Without ``password``, a one-time one (returned) is to be changed at the first
    sign-in."""
    roles = ("member", "admin") if admin else ("member",)
    user = create_user(
        email, password=password, display_name=display_name, status="active", roles=roles
    )
    temporary = temporary_password(user) if password is None else None
    audit(
        "auth.user_created",
        target=user.id,
        email=user.email,
        status=user.status,
        roles=list(roles),
        temporary_password=temporary is not None,
    )
    db.session.commit()
    return user, temporary


def reset_to_temporary_password(user: User) -> str:
    """An operator's reset: a one-time password (returned) replaces the user's, every token
    of theirs is revoked; audited and committed."""
    password = temporary_password(user)
    audit("auth.password_reset", target=user.id, method="temporary_password")
    db.session.commit()
    return password


def record_login(user: User, when: dt.datetime | None = None) -> None:
    """A sign-in (any way): it also cancels the account's deletion, if one is due."""
    user.last_login_at = when or utcnow()
    if user.deletion_due_at is not None:
        from mars_server.auth import privacy

        privacy.cancel_deletion(user)
