"""``/api/v1/me/notifications`` and ``/api/v1/me/notification-preferences``.

The blueprint shares the ``/me`` prefix with the auth plugin's: Flask routes each path to
the one blueprint that declares it, and the two declare different paths. There is no
``GET /notifications/{id}``: ``/notifications/read-all`` would match it too, and advertise a
GET it does not have (the list and ``POST .../{id}/read`` give a notification).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask.views import MethodView

from mars_server.http import Blueprint, Forbidden, current_actor, send_page
from mars_server.notifications import services
from mars_server.notifications.schemas import (
    MarkedReadSchema,
    NotificationPageSchema,
    NotificationQueryArgsSchema,
    NotificationSchema,
    PreferenceListSchema,
    PreferenceSchema,
    UnreadCountSchema,
)

if TYPE_CHECKING:
    from mars_server.notifications.models import Notification

blp = Blueprint(
    "notifications",
    __name__,
    url_prefix="/me",
    description="Your notifications, and how you want to be told of each kind of event.",
)


def my_id() -> str:
    """The signed-in user's id; an app acting for itself has no notifications."""
    actor = current_actor()
    if actor is None or actor.user_id is None:
        raise Forbidden("This needs a token of a user, not of an app acting for itself.")
    return actor.user_id


@blp.route("/notifications")
class MyNotifications(MethodView):
    @blp.requires("notifications:read")
    @blp.doc(operationId="list_my_notifications")
    @blp.arguments(NotificationQueryArgsSchema, location="query", as_kwargs=False)
    @blp.response(200, NotificationPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List your notifications, newest first

        Needs `notifications:read` and a token of a person. Returns a page of your notifications;
        `unread=true` or `unread=false` filters them, and `next_cursor` (also in the `Link` header)
        gives the next page.
        """
        return send_page(services.list_notifications(my_id(), args))


@blp.route("/notifications/unread-count")
class MyUnreadCount(MethodView):
    @blp.requires("notifications:read")
    @blp.doc(operationId="count_my_unread_notifications")
    @blp.response(200, UnreadCountSchema)
    def get(self) -> dict[str, int]:
        """Count your unread notifications

        Needs `notifications:read`. Returns `unread`: how many of your notifications are not marked
        read yet.
        """
        return {"unread": services.unread_count(my_id())}


@blp.route("/notifications/read-all")
class MyNotificationsReadAll(MethodView):
    @blp.requires("notifications:write")
    @blp.doc(operationId="mark_all_my_notifications_read")
    @blp.response(200, MarkedReadSchema)
    def post(self) -> dict[str, int]:
        """Mark all your notifications read

        Needs `notifications:write`. Marks every unread notification of yours read and returns how
        many that was, in `marked`.
        """
        return {"marked": services.mark_all_read(my_id())}


@blp.route("/notifications/<string:notification_id>/read")
class MyNotificationRead(MethodView):
    @blp.requires("notifications:write")
    @blp.doc(operationId="mark_my_notification_read")
    @blp.response(200, NotificationSchema)
    def post(self, notification_id: str) -> Notification:
        """Mark one of your notifications read

        Needs `notifications:write`. Returns the notification with its `read_at`; one read already
        keeps the time it was first read. A notification that is not yours is 404.
        """
        return services.mark_read(my_id(), notification_id)


@blp.route("/notification-preferences")
class MyPreferences(MethodView):
    @blp.requires("notifications:read")
    @blp.doc(operationId="list_my_notification_preferences")
    @blp.response(200, PreferenceListSchema)
    def get(self) -> dict[str, Any]:
        """List every event type and how you are told of it

        Needs `notifications:read`. Returns one entry per event type the server declares, with its
        description and whether you get it `in_app` and by `email`; a type you never chose shows the
        defaults (in the app, and by e-mail only if the operator turned that on).
        """
        return {"items": services.list_preferences(my_id())}


@blp.route("/notification-preferences/<string:event_type>")
class MyPreferenceByEventType(MethodView):
    @blp.requires("notifications:write")
    @blp.doc(operationId="set_my_notification_preference")
    @blp.arguments(PreferenceSchema)
    @blp.response(200, PreferenceSchema)
    def put(self, data: dict[str, bool], event_type: str) -> dict[str, Any]:
        """Choose how you are told of one event type: in the app, by e-mail

        Needs `notifications:write`. Send both `in_app` and `email` as booleans; the answer is the
        entry as it now stands. An event type the server does not declare is 404.
        """
        return services.set_preference(
            my_id(), event_type, in_app=data["in_app"], email=data["email"]
        )
