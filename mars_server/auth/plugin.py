"""Hook implementations of the builtin ``auth`` plugin."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mars_server import __version__, hookimpl
from mars_server.hookspecs import GraphQLPart, Permission, Schedule, Scope, Task, UserInfo
from mars_server.plugins import PluginInfo

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import click
    import flask
    import marshmallow as ma
    from flask import Flask, Request
    from flask_smorest import Blueprint

    from mars_server.events import Event
    from mars_server.hookspecs import (
        EventType,
        ExternalIdentity,
        ExternalSignIn,
        NotificationDraft,
        PersonalData,
        SecurityScheme,
    )
    from mars_server.http import Actor

PURGE_THROTTLES = "auth.purge_throttles"
#: erases the accounts whose deletion is due, deletes expired exports (auth/privacy.py)
PRIVACY_TASK = "auth.privacy"

MARS_PLUGIN = PluginInfo(
    name="auth",
    version=__version__,
    requires=f"=={__version__}",
    description="Accounts, tokens, roles and the OAuth 2 server",
    required=True,
)


@hookimpl
def mars_api_blueprints() -> Sequence[Blueprint]:
    from mars_server.auth.views import accounts_blp, apps_blp, me_blp, users_blp

    return [accounts_blp, me_blp, users_blp, apps_blp]


@hookimpl
def mars_graphql() -> GraphQLPart:
    from mars_server.auth.graphql import PART

    return PART


@hookimpl
def mars_migrations_location() -> str:
    return str(Path(__file__).parent / "migrations" / "versions")


@hookimpl
def mars_cli_commands() -> Sequence[click.Command]:
    from mars_server.auth.cli import apps_group, keys_group, tokens_group, users

    return [users, tokens_group, apps_group, keys_group]


@hookimpl
def mars_settings_schema() -> type[ma.Schema]:
    from mars_server.auth.schemas import AuthSettingsSchema

    return AuthSettingsSchema


@hookimpl
def mars_blueprints() -> Sequence[flask.Blueprint]:
    from mars_server.auth import account_pages, example_site, oauth_views

    # /oauth/... and /.well-known/...: OAuth's own wire format and the sign-in pages;
    # /accounts/...: registration, a forgotten password and the pages e-mailed links open;
    # /examples/website/: the example website, in development only.
    return [oauth_views.blueprint, account_pages.blueprint, example_site.blueprint]


@hookimpl
def mars_cors_paths() -> Sequence[str]:
    from mars_server.auth.openapi import CORS_PATHS

    return CORS_PATHS


@hookimpl
def mars_security_schemes(scopes: Mapping[str, str]) -> Sequence[SecurityScheme]:
    from mars_server.auth.openapi import security_schemes

    return security_schemes(scopes)


# First: the account mails' folder is searched before any other plugin's, so no plugin's
# template can replace what a password reset says.
@hookimpl(tryfirst=True)
def mars_app_ready(app: Flask) -> None:
    from mars_server.auth import oauth, token_cache
    from mars_server.mail import register_template_folder

    # Changes to tokens, users, roles and apps make cached token checks stale.
    token_cache.install()
    oauth.build_server(app)
    register_template_folder(app, Path(__file__).parent / "templates" / "mail")


@hookimpl
def mars_tasks() -> Sequence[Task]:
    from mars_server import operations
    from mars_server.auth import privacy
    from mars_server.auth.throttle import purge_stale

    return [
        Task(PURGE_THROTTLES, purge_stale, max_attempts=3),
        operations.task(privacy.EXPORT_TASK, privacy.build_export, max_attempts=3, timeout=600.0),
        Task(privacy.PRIVACY_TASK, privacy.maintenance, max_attempts=3, timeout=600.0),
    ]


@hookimpl
def mars_schedules() -> Sequence[Schedule]:
    return [
        Schedule(PURGE_THROTTLES, PURGE_THROTTLES, every=dt.timedelta(hours=1)),
        Schedule(PRIVACY_TASK, PRIVACY_TASK, every=dt.timedelta(hours=1)),
    ]


@hookimpl
def mars_event_types() -> Sequence[EventType]:
    from mars_server.auth.privacy import EVENT_TYPES

    return EVENT_TYPES


@hookimpl
def mars_notifications(event: Event) -> Sequence[NotificationDraft]:
    from mars_server.auth.privacy import notifications

    return notifications(event)


@hookimpl
def mars_personal_data_inventory() -> Sequence[PersonalData]:
    from mars_server.auth.privacy import INVENTORY

    return INVENTORY


@hookimpl
def mars_personal_data_export(user_id: str) -> Mapping[str, Any]:
    from mars_server.auth.privacy import export

    return export(user_id)


@hookimpl
def mars_personal_data_erase(user_id: str) -> Sequence[str]:
    from mars_server.auth.privacy import erase

    return erase(user_id)


@hookimpl
def mars_account_deletion_blockers(user_id: str) -> Sequence[str]:
    from mars_server.auth.privacy import blockers

    return blockers(user_id)


@hookimpl
def mars_actor_from_request(request: Request) -> Actor | None:
    from mars_server.auth.tokens import actor_from_request

    return actor_from_request(request)


@hookimpl
def mars_scopes() -> Sequence[Scope]:
    return [
        Scope("account:read", "See your account and your tokens."),
        Scope("account:write", "Change your account, password and tokens."),
        Scope(
            "account:tokens",
            "Create personal access tokens for you, each allowed no more than this app is "
            "(for OAuth apps, beside account:write).",
        ),
        # OpenID Connect (docs/oauth.md#openid-connect): who signed in, as an ID token
        Scope("openid", "Tell the app who you are (an ID token with your account's id)."),
        Scope("profile", "With openid: your display name."),
        Scope("email", "With openid: your e-mail address and whether it is verified."),
        Scope("users:read", "See every account (admins only)."),
        Scope("users:write", "Change accounts and roles (admins only)."),
        Scope("apps:read", "See the OAuth apps you registered."),
        Scope(
            "apps:write", "Register, change and delete your OAuth apps and rotate their secrets."
        ),
    ]


@hookimpl
def mars_permissions() -> Sequence[Permission]:
    return [Permission("users:manage", "See and change every account and its roles.")]


@hookimpl
def mars_user_info(user_id: str) -> UserInfo | None:
    from mars_server.auth.models import User
    from mars_server.db import db

    user = db.session.get(User, user_id)
    if user is None:
        return None
    return UserInfo(
        id=user.id,
        display_name=user.display_name,
        active=user.status == "active",
        email=user.email,
    )


@hookimpl
def mars_external_sign_in(
    identity: ExternalIdentity, next_url: str | None, binding: str | None
) -> ExternalSignIn:
    from mars_server.auth import external

    return external.sign_in(identity, next_url, binding)


@hookimpl
def mars_confirm_password(user_id: str, password: str, address: str | None) -> bool:
    from mars_server.auth import signin
    from mars_server.auth.models import User
    from mars_server.db import db

    user = db.session.get(User, user_id)
    return user is not None and signin.confirm_password(user, password, address)
