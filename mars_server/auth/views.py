"""The accounts API: ``/api/v1/me``, ``/api/v1/me/tokens`` and the admins' ``/api/v1/users``.

Each view calls one service, which commits its change (see :mod:`mars_server.auth.accounts`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from flask import request, url_for
from flask.views import MethodView

from mars_server import operations
from mars_server.auth import accounts, apps, consents, emails, privacy, signin, tokens
from mars_server.auth.schemas import (
    AcceptedSchema,
    AccountDeletionSchema,
    AppListSchema,
    AppSchema,
    AppUpdateSchema,
    AuthorizationListSchema,
    DataExportListSchema,
    DataExportSchema,
    DeletionScheduledSchema,
    LinkTokenSchema,
    MeSchema,
    MeUpdateSchema,
    NewAppSchema,
    NewTokenSchema,
    PasswordChangeSchema,
    PasswordResetRequestSchema,
    PasswordResetSchema,
    RegistrationSchema,
    RoleSchema,
    TokenListSchema,
    TokenSchema,
    UserPageSchema,
    UserQueryArgsSchema,
    UserSchema,
)
from mars_server.http import (
    Blueprint,
    Forbidden,
    current_actor,
    require_if_match,
    send_etag,
    send_page,
)
from mars_server.ops.operations_views import LongRunningOperationSchema

if TYPE_CHECKING:
    from mars_server.auth.models import OAuthClient, User

me_blp = Blueprint(
    "me", __name__, url_prefix="/me", description="Your own account and personal access tokens."
)
users_blp = Blueprint("users", __name__, url_prefix="/users", description="Accounts, for admins.")


def me() -> User:
    """The signed-in user; an app acting for itself (client credentials) has no "me"."""
    actor = current_actor()
    if actor is None or actor.user_id is None:
        raise Forbidden("This needs a token of a user, not of an app acting for itself.")
    return accounts.get_user(actor.user_id)


@me_blp.route("")
class Me(MethodView):
    @me_blp.requires("account:read")
    @me_blp.doc(operationId="get_me")
    @me_blp.response(200, MeSchema)
    def get(self) -> User:
        """Show your account

        Needs `account:read` and a token that acts for a person: an app's own client-credentials
        token gets 403. Returns your e-mail address, display name, status, roles and
        `deletion_due_at`, with an `ETag` to send as `If-Match` when you change the account.
        """
        return send_etag(me())

    @me_blp.requires("account:write")
    @me_blp.doc(operationId="update_me")
    @me_blp.arguments(MeUpdateSchema)
    @me_blp.response(200, MeSchema)
    def patch(self, changes: dict[str, Any]) -> User:
        """Change your display name (send If-Match)

        Needs `account:write`. Only `display_name` can change; send `If-Match` with the `ETag` you
        last read (428 without it, 412 if the account changed since). Returns the updated account
        and its new `ETag`.
        """
        user = me()
        require_if_match(user)
        return send_etag(accounts.update_profile(user, changes))

    @me_blp.requires("account:write")
    @me_blp.doc(
        operationId="delete_me",
        description="Every token of yours is revoked at once; the account and everything "
        "every part of MARS keeps about you is erased after the grace period (14 days unless "
        "the operator says otherwise). Signing in before then cancels the deletion. A 409 "
        "says what you must do first (a project only you own, that has other members).",
        # the password (or a fresh sign-in) confirms it, not a version of the account
        **{"x-mars-if-match": False},
    )
    @me_blp.alt_response(429, response="TOO_MANY_REQUESTS")
    @me_blp.arguments(AccountDeletionSchema)
    @me_blp.response(202, DeletionScheduledSchema)
    def delete(self, data: dict[str, Any]) -> dict[str, Any]:
        """Delete your account, after a grace period"""
        actor = current_actor()
        assert actor is not None
        due = privacy.request_deletion(me(), actor, data.get("password"), request.remote_addr)
        return {"deletion_due_at": due}


@me_blp.route("/export")
class MyExport(MethodView):
    # account:write: it mails the person and makes the workers gather everything, which a
    # read-only app must not be able to set off (and a person gets a few a day).
    @me_blp.requires("account:write")
    @me_blp.doc(
        operationId="export_my_data",
        description="Everything MARS keeps about you, as a ZIP of JSON files, one per part of "
        "MARS. It is made in the background, as a long-running operation: follow `Location` "
        "(or the SDK's `client.wait`) until it succeeds; its `result` is the export. You then "
        "get a notification and an e-mail with a link that works once, for a limited time. "
        "Asking again while one is being made returns that one.",
    )
    @me_blp.response(202, LongRunningOperationSchema)
    def post(self) -> tuple[Any, int, dict[str, str]]:
        """Ask for an export of your data"""
        return operations.accepted(privacy.request_export(me()))


@me_blp.route("/exports")
class MyExports(MethodView):
    @me_blp.requires("account:read")
    @me_blp.doc(operationId="list_my_exports")
    @me_blp.response(200, DataExportListSchema)
    def get(self) -> dict[str, Any]:
        """List your latest data exports, newest first

        Needs `account:read`. Returns your 20 most recent data exports, each with its `status`
        (`pending`, `ready`, `downloaded`, `expired` or `failed`), size and expiry. The download
        link itself is only ever sent by e-mail.
        """
        return {"items": privacy.list_exports(me())}


@me_blp.route("/exports/<string:export_id>")
class MyExportById(MethodView):
    @me_blp.requires("account:read")
    @me_blp.doc(operationId="get_my_export")
    @me_blp.response(200, DataExportSchema)
    def get(self, export_id: str) -> Any:
        """Show where an export of your data stands

        Needs `account:read`. Returns the export's `status`, `ready_at`, `expires_at`,
        `downloaded_at` and any `error`; an export that is not yours is 404. The download link
        itself is only ever sent by e-mail.
        """
        return privacy.get_export(me(), export_id)


@me_blp.route("/password")
class MyPassword(MethodView):
    @me_blp.requires("account:write")
    @me_blp.doc(operationId="change_my_password")
    @me_blp.alt_response(429, response="TOO_MANY_REQUESTS")
    @me_blp.arguments(PasswordChangeSchema)
    @me_blp.response(204)
    def post(self, data: dict[str, str]) -> None:
        """Change your password; every token you hold is revoked

        Needs `account:write`; send `current_password` and `new_password`. A wrong current password
        is 422 and counts as a failed sign-in, so repeated tries end in 429. On success every token
        you hold is revoked, including the one that made this call, and your browser sign-ins end.
        """
        signin.change_password(
            me(), data["current_password"], data["new_password"], request.remote_addr
        )


@me_blp.route("/tokens")
class MyTokens(MethodView):
    @me_blp.requires("account:read")
    @me_blp.doc(operationId="list_my_tokens")
    @me_blp.response(200, TokenListSchema)
    def get(self) -> dict[str, Any]:
        """List your personal access tokens

        Needs `account:read`. Returns your personal access tokens, newest first, including revoked
        and expired ones (see `revoked_at` and `expires_at`); each shows its `hint`, scopes and last
        use, never the token itself.
        """
        return {"items": tokens.list_personal_access_tokens(me())}

    @me_blp.requires("account:write")
    @me_blp.doc(operationId="create_my_token")
    @me_blp.arguments(NewTokenSchema)
    @me_blp.response(201, NewTokenSchema)
    def post(self, data: dict[str, Any]) -> tuple[SimpleNamespace, dict[str, str]]:
        """Create a personal access token (shown once)

        The new token is never stronger than the one that asks for it: its scopes must be
        among the calling token's (403 `insufficient_scope` names the missing ones), and it
        ends when the calling token does at the latest: a longer `expires_in_days` is cut
        (`expires_at` tells). An OAuth app's token also needs the `account:tokens` scope,
        which the user allows on the consent page.
        """
        row, secret = tokens.create_personal_access_token(
            me(),
            name=data["name"],
            scopes=data["scopes"],
            expires_in_days=data.get("expires_in_days"),
            issuer=current_actor(),
        )
        # The secret travels beside the row, never on it: it is not stored anywhere.
        columns = {column.key: getattr(row, column.key) for column in row.__table__.columns}
        location = url_for("me.MyTokenById", token_id=row.id)
        return SimpleNamespace(**columns, token=secret), {"Location": location}


@me_blp.route("/tokens/<string:token_id>")
class MyTokenById(MethodView):
    @me_blp.requires("account:read")
    @me_blp.doc(operationId="get_my_token")
    @me_blp.response(200, TokenSchema)
    def get(self, token_id: str) -> Any:
        """Show one of your personal access tokens (never the token itself)

        Needs `account:read`. Returns the token's name, `hint`, scopes, expiry, last use and
        `revoked_at`; a token that is not yours is 404.
        """
        return tokens.get_personal_access_token(me(), token_id)

    @me_blp.requires("account:write")
    @me_blp.doc(operationId="revoke_my_token", **{"x-mars-if-match": False})
    @me_blp.response(204)
    def delete(self, token_id: str) -> None:
        """Revoke one of your personal access tokens

        Needs `account:write`; no `If-Match`. The token stops working at once; revoking one that is
        already revoked changes nothing and still answers 204. A token that is not yours is 404.
        """
        tokens.revoke_personal_access_token(tokens.get_personal_access_token(me(), token_id))


@me_blp.route("/authorizations")
class MyAuthorizations(MethodView):
    @me_blp.requires("account:read")
    @me_blp.doc(operationId="list_my_authorizations")
    @me_blp.response(200, AuthorizationListSchema)
    def get(self) -> dict[str, Any]:
        """List the apps you allowed to act for you

        Needs `account:read`. Returns the OAuth apps whose consent MARS remembers for you, newest
        first, with the `scopes` you allowed each and when (`granted_at`).
        """
        return {"items": consents.list_authorizations(me())}


@me_blp.route("/authorizations/<string:client_id>")
class MyAuthorizationByClient(MethodView):
    @me_blp.requires("account:write")
    @me_blp.doc(operationId="revoke_my_authorization", **{"x-mars-if-match": False})
    @me_blp.response(204)
    def delete(self, client_id: str) -> None:
        """Take back what you allowed an app: its tokens stop working, and it must ask again

        Needs `account:write`. Forgets what you allowed the app, revokes every OAuth token it holds
        for you and the personal access tokens it created for you; the app must ask for your consent
        again. An app you have not allowed is 404.
        """
        consents.revoke_authorization(me(), client_id)


@users_blp.route("")
class Users(MethodView):
    @users_blp.requires("users:read", permission="users:manage")
    @users_blp.doc(operationId="list_users")
    @users_blp.arguments(UserQueryArgsSchema, location="query", as_kwargs=False)
    @users_blp.response(200, UserPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List accounts (admins)

        Needs `users:read` and the admin role. Returns a page of accounts; filter with `status`, and
        follow `next_cursor` (or the `Link` header) for the next page.
        """
        return send_page(accounts.list_users(args))


@users_blp.route("/<string:user_id>")
class UserById(MethodView):
    @users_blp.requires("users:read", permission="users:manage")
    @users_blp.doc(operationId="get_user")
    @users_blp.response(200, UserSchema)
    def get(self, user_id: str) -> User:
        """Show an account (admins)

        Needs `users:read` and the admin role. Returns the account with its status and roles, and an
        `ETag`; an unknown id is 404.
        """
        return send_etag(accounts.get_user(user_id))


@users_blp.route("/<string:user_id>/roles")
class UserRoles(MethodView):
    @users_blp.requires("users:write", permission="users:manage")
    @users_blp.doc(operationId="grant_user_role")
    @users_blp.arguments(RoleSchema)
    @users_blp.response(200, UserSchema)
    def post(self, data: dict[str, str], user_id: str) -> User:
        """Grant a role (admins)

        Needs `users:write` and the admin role. Gives the account the `role` (`admin` or `member`)
        and returns the account; granting a role it already holds changes nothing. Each grant is
        recorded in the audit log.
        """
        user = accounts.get_user(user_id)
        accounts.grant_role(user, data["role"])
        return user


@users_blp.route("/<string:user_id>/roles/<string:role>")
class UserRoleByName(MethodView):
    @users_blp.requires("users:write", permission="users:manage")
    @users_blp.doc(operationId="revoke_user_role", **{"x-mars-if-match": False})
    @users_blp.response(200, UserSchema)
    @users_blp.alt_response(409, response="CONFLICT")
    def delete(self, user_id: str, role: str) -> User:
        """Revoke a role (admins)

        The admin role of the last active admin stays: 409 `urn:mars:problem:last-admin`
        until another active account holds it.
        """
        user = accounts.get_user(user_id)
        accounts.revoke_role(user, role)
        return user


accounts_blp = Blueprint(
    "accounts",
    __name__,
    url_prefix="/accounts",
    description="Registration, e-mail verification and password reset.",
)
_CHECK_INBOX = {"detail": "If the address can receive it, an e-mail is on its way."}


@accounts_blp.route("")
class Registration(MethodView):
    @accounts_blp.doc(operationId="register")
    @accounts_blp.arguments(RegistrationSchema)
    @accounts_blp.response(202, AcceptedSchema)
    @accounts_blp.alt_response(429, response="TOO_MANY_REQUESTS")
    def post(self, data: dict[str, str]) -> dict[str, str]:
        """Register: a verification link is e-mailed

        Needs no token. Creates a pending account and e-mails a link to verify the address; the
        answer is the same whether or not the address has an account, and registering again while
        pending replaces the password and name. Too many account e-mails asked for from your IP
        address: 429; an address whose domain uses single sign-on: 422.
        """
        emails.register(data["email"], data["password"], data["display_name"], request.remote_addr)
        return _CHECK_INBOX


@accounts_blp.route("/verify")
class Verification(MethodView):
    @accounts_blp.doc(operationId="verify_email")
    @accounts_blp.arguments(LinkTokenSchema)
    @accounts_blp.response(204)
    def post(self, data: dict[str, str]) -> None:
        """Verify your e-mail address with the link's token

        Needs no token. Send the `token` from the e-mailed link: a pending account becomes active. A
        link works once and expires (after 48 hours by default); an unknown, used or expired one is
        400.
        """
        emails.verify_email(data["token"])


@accounts_blp.route("/verification")
class VerificationRequest(MethodView):
    @accounts_blp.doc(operationId="resend_verification")
    @accounts_blp.arguments(PasswordResetRequestSchema)
    @accounts_blp.response(202, AcceptedSchema)
    @accounts_blp.alt_response(429, response="TOO_MANY_REQUESTS")
    def post(self, data: dict[str, str]) -> dict[str, str]:
        """Ask for a new verification link by e-mail (the same answer for every address)

        Needs no token. If the address has an account still waiting for verification, a new link is
        e-mailed and older links stop working; otherwise nothing is sent, with the same answer. Too
        many requests from your IP address: 429.
        """
        emails.resend_verification(data["email"], request.remote_addr)
        return _CHECK_INBOX


@accounts_blp.route("/password-reset")
class PasswordResetRequest(MethodView):
    @accounts_blp.doc(operationId="request_password_reset")
    @accounts_blp.arguments(PasswordResetRequestSchema)
    @accounts_blp.response(202, AcceptedSchema)
    @accounts_blp.alt_response(429, response="TOO_MANY_REQUESTS")
    def post(self, data: dict[str, str]) -> dict[str, str]:
        """Ask for a password-reset link by e-mail

        Needs no token. If the address has an account that is not disabled, a reset link is e-mailed
        (it works once, for 30 minutes by default) and older ones stop working; the answer never
        says whether it has one. Too many requests from your IP address: 429.
        """
        emails.request_password_reset(data["email"], request.remote_addr)
        return _CHECK_INBOX


@accounts_blp.route("/password-reset/confirm")
class PasswordReset(MethodView):
    @accounts_blp.doc(operationId="reset_password")
    @accounts_blp.arguments(PasswordResetSchema)
    @accounts_blp.response(204)
    def post(self, data: dict[str, str]) -> None:
        """Set a new password with the link's token; every token you hold is revoked

        Needs no token. Send the link's `token` and the new `password`: every token of the account
        is revoked and its browser sign-ins end. An unusable link is 400; a password the policy
        refuses is 422 and leaves the link usable for another try.
        """
        emails.reset_password(data["token"], data["password"])


apps_blp = Blueprint(
    "apps",
    __name__,
    url_prefix="/apps",
    description="OAuth apps you register to let people use MARS through your software.",
)


def _app_owner() -> User:
    actor = current_actor()
    if actor is None or actor.user_id is None:
        raise Forbidden("Only people register OAuth apps, not apps themselves.")
    return accounts.get_user(actor.user_id)


def _with_secret(app: OAuthClient, secret: str | None) -> SimpleNamespace:
    # The secret travels beside the row, never on it: only its digest is stored.
    columns = {column.key: getattr(app, column.key) for column in app.__table__.columns}
    return SimpleNamespace(**columns, client_secret=secret)


@apps_blp.route("")
class Apps(MethodView):
    @apps_blp.requires("apps:read")
    @apps_blp.doc(operationId="list_apps")
    @apps_blp.response(200, AppListSchema)
    def get(self) -> dict[str, Any]:
        """List the OAuth apps you registered

        Needs `apps:read` and a token of a person (an app's own token gets 403). Returns the OAuth
        apps you own, oldest first; their secrets are never shown.
        """
        return {"items": apps.list_apps(_app_owner())}

    @apps_blp.requires("apps:write")
    @apps_blp.doc(operationId="create_app")
    @apps_blp.arguments(AppSchema)
    @apps_blp.response(201, NewAppSchema)
    def post(self, data: dict[str, Any]) -> tuple[SimpleNamespace, dict[str, str]]:
        """Register an OAuth app (its secret is shown once)

        Needs `apps:write`, and your token must have every scope you give the app (403
        `insufficient_scope` otherwise). The answer carries `client_secret` (null for public apps)
        this once only: store it. `authorization_code` needs at least one redirect URI.
        """
        app, secret = apps.create_app(_app_owner(), data, issuer=current_actor())
        send_etag(app)
        return _with_secret(app, secret), {"Location": url_for("apps.AppById", app_id=app.id)}


@apps_blp.route("/<string:app_id>")
class AppById(MethodView):
    @apps_blp.requires("apps:read")
    @apps_blp.doc(operationId="get_app")
    @apps_blp.response(200, AppSchema)
    def get(self, app_id: str) -> OAuthClient:
        """Show one of your OAuth apps

        Needs `apps:read`. Returns the app, never its secret, with an `ETag` for `If-Match`; an app
        you do not own is 404.
        """
        return send_etag(apps.get_app(_app_owner(), app_id))

    @apps_blp.requires("apps:write")
    @apps_blp.doc(operationId="update_app")
    @apps_blp.arguments(AppUpdateSchema(partial=True))
    @apps_blp.response(200, AppSchema)
    def patch(self, changes: dict[str, Any], app_id: str) -> OAuthClient:
        """Change an OAuth app (send If-Match)

        Needs `apps:write` and `If-Match`; `client_type` cannot change. Widening `scopes` needs a
        token with the new scopes, and changing `redirect_uris` or `grant_types` needs one with
        every scope the app may ask for (403 `insufficient_scope` otherwise).
        """
        app = apps.get_app(_app_owner(), app_id)
        require_if_match(app)
        apps.update_app(app, changes, issuer=current_actor())
        return send_etag(app)

    @apps_blp.requires("apps:write")
    @apps_blp.doc(operationId="delete_app")
    @apps_blp.response(204)
    def delete(self, app_id: str) -> None:
        """Delete an OAuth app; its tokens stop working (send If-Match)

        Needs `apps:write` and `If-Match`. Every token issued to the app is revoked, its
        authorization codes are dropped, and the personal access tokens it created for people are
        revoked too. An app you do not own is 404.
        """
        app = apps.get_app(_app_owner(), app_id)
        require_if_match(app)
        apps.delete_app(app)


@apps_blp.route("/<string:app_id>/secret")
class AppSecret(MethodView):
    @apps_blp.requires("apps:write")
    @apps_blp.doc(operationId="rotate_app_secret")
    @apps_blp.response(200, NewAppSchema)
    def post(self, app_id: str) -> SimpleNamespace:
        """Rotate an app's secret; the old one works for a grace period

        Needs `apps:write` and a token with every scope the app may ask for. Returns the app with
        its new `client_secret`, shown this once; the previous secret keeps working until
        `previous_secret_expires_at`. A public app has no secret: 409.
        """
        app = apps.get_app(_app_owner(), app_id)
        secret = apps.rotate_secret(app, issuer=current_actor())
        send_etag(app)
        return _with_secret(app, secret)
