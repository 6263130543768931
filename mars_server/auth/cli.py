"""``mars users`` and ``mars tokens``: the operators' overrides. Every change is committed,
by the service each command calls."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from mars_server.auth import accounts, apps, tokens
from mars_server.db import db
from mars_server.ops import keys

users = AppGroup("users", help="Create accounts, reset passwords, disable, manage roles.")
tokens_group = AppGroup("tokens", help="Create and revoke personal access tokens.")
apps_group = AppGroup("apps", help="Declare first-party apps (the website); list and delete apps.")
# `mars keys` is the core's (the encryption keyring); the signing keys' command joins it.
keys_group = keys.keys_group


def _user(email: str) -> accounts.User:
    user = accounts.find_user(email)
    if user is None:
        raise click.ClickException(f"no user with the e-mail address {email!r}")
    return user


def _fail_on_problem(func):  # type: ignore[no-untyped-def]
    """Turn the services' problems (MarsError, ValidationFailed) into one-line CLI errors."""
    import functools

    from mars_server.http import MarsError, ValidationFailed

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return func(*args, **kwargs)
        except ValidationFailed as exc:
            db.session.rollback()
            raise click.ClickException(exc.message) from None
        except MarsError as exc:
            db.session.rollback()
            raise click.ClickException(exc.detail or exc.title or "failed") from None

    return wrapper


@users.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Also grant the admin role.")
@click.option("--name", "display_name", default="", help="Display name.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (else a temporary one is printed).",
)
@_fail_on_problem
def create_user(email: str, admin: bool, display_name: str, password_stdin: bool) -> None:
    """Create an active account (no e-mail verification)."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    user, temporary = accounts.provision_user(
        email, password=password, display_name=display_name, admin=admin
    )
    if temporary is None:
        click.echo(f"created {user.id} {user.email}")
        return
    click.echo(f"created {user.id} {user.email}; one-time password (change at sign-in):")
    click.echo(temporary)


@users.command("reset-password")
@click.argument("email")
@click.option(
    "--temporary",
    is_flag=True,
    help="Print a one-time password instead of sending the reset e-mail.",
)
@_fail_on_problem
def reset_password(email: str, temporary: bool) -> None:
    """Send a password-reset e-mail, or print a one-time password (--temporary)."""
    user = _user(email)
    if temporary:
        password = accounts.reset_to_temporary_password(user)
        click.echo(f"one-time password for {user.email} (all their tokens are revoked):")
        click.echo(password)
        return
    from mars_server.auth.emails import send_password_reset

    send_password_reset(user)
    click.echo(f"password-reset e-mail sent to {user.email}")


_FORCE = click.option(
    "--force",
    is_flag=True,
    help="Also for the last active admin, leaving none (e.g. a compromised account); "
    "'mars users grant-role EMAIL admin' names a new one.",
)


def _last_admin_refused(error: accounts.LastAdmin) -> click.ClickException:
    return click.ClickException(f"{error.detail} Or repeat with --force.")


def _warn_if_no_admin_left() -> None:
    if not accounts.count_active_admins():
        click.echo(
            "warning: there is no active admin now; 'mars users grant-role EMAIL admin' names one",
            err=True,
        )


@users.command("disable")
@click.argument("email")
@_FORCE
@_fail_on_problem
def disable(email: str, force: bool) -> None:
    """Disable an account and revoke all its tokens (not the last active admin's, unless
    --force)."""
    user = _user(email)
    try:
        accounts.set_status(user, "disabled", force=force)
    except accounts.LastAdmin as error:
        db.session.rollback()  # at once: the admin rows stay locked until then
        raise _last_admin_refused(error) from None
    click.echo(f"disabled {user.email}; tokens revoked")
    _warn_if_no_admin_left()


@users.command("enable")
@click.argument("email")
@_fail_on_problem
def enable(email: str) -> None:
    """Enable (or activate) an account."""
    user = _user(email)
    accounts.set_status(user, "active")
    click.echo(f"enabled {user.email}")


@users.command("grant-role")
@click.argument("email")
@click.argument("role")
@_fail_on_problem
def grant_role(email: str, role: str) -> None:
    """Grant ROLE (admin, member) to the account."""
    user = _user(email)
    changed = accounts.grant_role(user, role)
    click.echo(f"{user.email} {'now has' if changed else 'already had'} the role {role}")


@users.command("revoke-role")
@click.argument("email")
@click.argument("role")
@_FORCE
@_fail_on_problem
def revoke_role(email: str, role: str, force: bool) -> None:
    """Revoke ROLE from the account (admin: not from the last active admin, unless --force)."""
    user = _user(email)
    try:
        changed = accounts.revoke_role(user, role, force=force)
    except accounts.LastAdmin as error:
        db.session.rollback()  # at once: the admin rows stay locked until then
        raise _last_admin_refused(error) from None
    click.echo(f"{user.email} {'no longer has' if changed else 'did not have'} the role {role}")
    _warn_if_no_admin_left()


@tokens_group.command("create")
@click.argument("email")
@click.option("--scope", "scopes", multiple=True, required=True, help="Repeat for each scope.")
@click.option("--name", default="created by an operator", show_default=True)
@click.option("--expires-in", "days", type=click.IntRange(min=1), help="Days (default 90).")
@_fail_on_problem
def create_token(email: str, scopes: tuple[str, ...], name: str, days: int | None) -> None:
    """Create a personal access token for EMAIL; the token is the last line printed."""
    row, secret = tokens.create_personal_access_token(
        _user(email), name=name, scopes=list(scopes), expires_in_days=days
    )
    click.echo(f"created {row.id} for {email}, expires {row.expires_at:%Y-%m-%d}")
    click.echo(secret)


@tokens_group.command("revoke")
@click.argument("token_id", required=False)
@click.option("--user", "email", help="Revoke every token of this account instead.")
@_fail_on_problem
def revoke_token(token_id: str | None, email: str | None) -> None:
    """Revoke one token by ID, or every token of a user (--user EMAIL)."""
    if bool(token_id) == bool(email):
        raise click.UsageError("give a token ID or --user EMAIL, not both")
    if email:
        count = accounts.revoke_all_tokens(_user(email), reason="operator")
        click.echo(f"revoked {count} tokens of {email}")
        return
    from mars_server.auth.models import PersonalAccessToken

    row = db.session.get(PersonalAccessToken, token_id)
    if row is None:
        raise click.ClickException(f"no token {token_id!r}")
    tokens.revoke_personal_access_token(row)
    click.echo(f"revoked {token_id}")


@apps_group.command("create")
@click.option(
    "--first-party",
    is_flag=True,
    required=True,
    help="The organisation's own app: a public client, no consent page (required: other "
    "apps are registered by their owners through the API).",
)
@click.option("--name", required=True, help="The name people see on the sign-in page.")
@click.option(
    "--redirect-uri", "redirect_uris", multiple=True, required=True, help="Repeat for more."
)
@click.option(
    "--post-logout-redirect-uri",
    "post_logout_redirect_uris",
    multiple=True,
    help="Where /oauth/logout may send the browser back to; repeat for more.",
)
@click.option("--scope", "scopes", multiple=True, required=True, help="Repeat for more.")
@click.option(
    "--access-token-format",
    type=click.Choice(["opaque", "jwt"]),
    default="opaque",
    show_default=True,
    help="jwt: access tokens other services check offline (RFC 9068).",
)
@_fail_on_problem
def create_app(
    first_party: bool,
    name: str,
    redirect_uris: tuple[str, ...],
    post_logout_redirect_uris: tuple[str, ...],
    scopes: tuple[str, ...],
    access_token_format: str,
) -> None:
    """Declare a first-party app; prints its client_id (it has no secret)."""
    app = apps.create_first_party_app(
        name,
        list(redirect_uris),
        list(post_logout_redirect_uris),
        list(scopes),
        access_token_format,
    )
    click.echo(f"created {app.id} first-party app {app.name!r}; client_id:")
    click.echo(app.client_id)


@apps_group.command("list")
def list_apps() -> None:
    """Every app: client_id, kind, name and scopes."""
    found = apps.all_apps()
    for app in found:
        kind = "first-party" if app.first_party else app.client_type
        click.echo(f"{app.client_id}  {kind:<12}  {app.name}  [{app.scopes}]")
    click.echo(f"{len(found)} apps in all")


@apps_group.command("resources")
@click.argument("client_id")
@click.option(
    "--resource",
    "resources",
    multiple=True,
    help="One of MARS_AUTH__RESOURCES; repeat for more; none: the app gets tokens for MARS only.",
)
@_fail_on_problem
def app_resources(client_id: str, resources: tuple[str, ...]) -> None:
    """Set the services an app may ask JWT access tokens for (RFC 8707 resource indicators)."""
    app = apps.by_client_id(client_id)
    if app is None:
        raise click.ClickException(f"no app with the client_id {client_id!r}")
    apps.set_resources(app, list(resources))
    click.echo(f"{app.client_id} may ask tokens for: {', '.join(app.resources) or 'MARS only'}")


@apps_group.command("delete")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_fail_on_problem
def delete_app(client_id: str, yes: bool) -> None:
    """Delete an app: every token and code it holds stops working."""
    app = apps.by_client_id(client_id)
    if app is None:
        raise click.ClickException(f"no app with the client_id {client_id!r}")
    if not yes:
        click.confirm(f"Delete {app.name!r} and revoke every token it holds?", abort=True)
    apps.delete_app(app)
    click.echo(f"deleted {app.client_id}")


@keys_group.command("rotate-signing")
def rotate_signing() -> None:
    """Sign with a new key from now on; the old one stays published (jwks.json) until the
    tokens it signed have expired."""
    from mars_server.auth import signing_keys

    key, deleted = signing_keys.rotate()
    click.echo(f"signing with {key.id} ({key.alg}) from now on")
    for kid in deleted:
        click.echo(f"deleted {kid}: every token it signed has expired")


@users.command("export")
@click.argument("email")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="The ZIP to write (it must not exist).",
)
@_fail_on_problem
def export_user(email: str, out: str) -> None:
    """Write everything MARS keeps about a person to a ZIP (their right of access); audited."""
    import os

    from mars_server.auth import privacy

    user = _user(email)
    data = privacy.export_for_operator(user)
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{out} exists; choose another name") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    click.echo(f"written: {out} ({len(data)} bytes); it holds personal data, keep it safe")


@users.command("erase")
@click.argument("email")
@click.option("--now", "now", is_flag=True, help="Erase at once instead of after the grace period.")
@click.option(
    "--days",
    type=click.IntRange(0, 365),
    help="The grace period (default: the auth plugin's deletion_grace_days).",
)
@click.option("--yes", is_flag=True, help="Do not ask (with --now).")
@_fail_on_problem
def erase_user(email: str, now: bool, days: int | None, yes: bool) -> None:
    """Delete a person's account and erase what every plugin keeps about them (their right to
    erasure). By default after the grace period, which their signing in cancels; tokens are
    revoked at once. With --now, at once and for good."""
    from mars_server.auth import privacy

    user = _user(email)
    if now:
        if not yes:
            click.confirm(f"Erase {user.email} now? This cannot be undone.", abort=True)
        done = privacy.erase_now(user)
        for plugin, lines in done.items():
            for line in lines:
                click.echo(f"{plugin}: {line}")
        click.echo(f"erased {email}")
        return
    due = privacy.schedule_deletion(user, days)
    click.echo(f"{user.email} is erased on {due:%Y-%m-%d %H:%M} UTC unless they sign in before")


@users.command("keep")
@click.argument("email")
@_fail_on_problem
def keep_user(email: str) -> None:
    """Cancel an account's deletion during its grace period."""
    from mars_server.auth import privacy

    user = _user(email)
    if user.deletion_due_at is None:
        raise click.ClickException(f"{user.email} is not due for deletion")
    privacy.cancel_deletion(user)
    db.session.commit()
    click.echo(f"{user.email} stays")
