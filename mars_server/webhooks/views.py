"""The webhooks API: ``/api/v1/webhooks``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import url_for
from flask.views import MethodView

from mars_server import operations
from mars_server.http import (
    Blueprint,
    authorize,
    current_actor,
    require_if_match,
    send_etag,
    send_page,
)
from mars_server.webhooks import services
from mars_server.webhooks.schemas import (
    DeliveryDetailSchema,
    DeliveryPageSchema,
    DeliveryQueryArgsSchema,
    DeliverySchema,
    NewSecretSchema,
    WebhookPageSchema,
    WebhookQueryArgsSchema,
    WebhookSchema,
    WebhookUpdateSchema,
)

if TYPE_CHECKING:
    from mars_server.webhooks.models import WebhookDelivery, WebhookEndpoint

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/webhooks",
    description="Webhook endpoints: events POSTed to your URLs, signed as Standard Webhooks.",
)


def owner_id() -> str:
    """The user whose endpoints the caller manages (``requires`` checked there is a caller)."""
    actor = current_actor()
    assert actor is not None
    return services.owner_id_of(actor)


class WithSecret:
    """An endpoint and its new secret: the secret travels beside the row, never on it."""

    def __init__(self, endpoint: WebhookEndpoint, secret: str) -> None:
        self._endpoint = endpoint
        self.secret = secret

    def __getattr__(self, name: str) -> Any:
        return getattr(self._endpoint, name)


@blp.route("")
class Webhooks(MethodView):
    @blp.requires("webhooks:read")
    @blp.doc(operationId="list_webhooks")
    @blp.arguments(WebhookQueryArgsSchema, location="query", as_kwargs=False)
    @blp.response(200, WebhookPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List your webhook endpoints, oldest first

        Needs `webhooks:read` and a token of a person: endpoints belong to people, so an app's own
        token gets 403. Returns a page of your endpoints, without their secrets; follow
        `next_cursor` or the `Link` header for the next page.
        """
        return send_page(services.list_endpoints(owner_id(), args))

    @blp.requires("webhooks:write")
    @blp.doc(operationId="create_webhook")
    @blp.arguments(WebhookSchema)
    @blp.response(201, NewSecretSchema)
    def post(self, data: dict[str, Any]) -> tuple[WithSecret, dict[str, str]]:
        """Create a webhook endpoint; its signing secret is shown only in this answer

        Needs `webhooks:write`, and your token must have the scope that reads each subscribed event
        type (403 `insufficient_scope` otherwise). The answer carries `secret`, which signs every
        delivery and is never shown again. Private and loopback URLs are refused unless the server
        allows them.
        """
        endpoint, secret = services.create_endpoint(owner_id(), data, issuer=current_actor())
        send_etag(endpoint)
        location = url_for("webhooks.WebhookById", webhook_id=endpoint.id)
        return WithSecret(endpoint, secret), {"Location": location}


@blp.route("/<string:webhook_id>")
class WebhookById(MethodView):
    @blp.requires("webhooks:read")
    @blp.doc(operationId="get_webhook")
    @blp.response(200, WebhookSchema)
    def get(self, webhook_id: str) -> WebhookEndpoint:
        """Get one of your webhook endpoints

        Needs `webhooks:read`. Returns the endpoint, never its secret, with an `ETag` for
        `If-Match`; `disabled_reason` and `failing_since` tell why deliveries stopped. An endpoint
        that is not yours is 404.
        """
        return send_etag(services.get_endpoint(owner_id(), webhook_id))

    @blp.requires("webhooks:write")
    @blp.doc(operationId="update_webhook")
    @blp.arguments(WebhookUpdateSchema(partial=True))
    @blp.response(200, WebhookSchema)
    def patch(self, changes: dict[str, Any], webhook_id: str) -> WebhookEndpoint:
        """Change a webhook endpoint, or enable it again (send If-Match)

        Needs `webhooks:write` and `If-Match`; send only the fields to change. Setting `disabled` to
        false resumes deliveries and clears `disabled_reason` and `failing_since`. A new `url` needs
        a token with the scopes that read all the endpoint's events; added `events`, their scopes.
        """
        endpoint = services.get_endpoint(owner_id(), webhook_id)
        require_if_match(endpoint)
        return send_etag(services.update_endpoint(endpoint, changes, issuer=current_actor()))

    @blp.requires("webhooks:write")
    @blp.doc(operationId="delete_webhook")
    @blp.response(204)
    def delete(self, webhook_id: str) -> None:
        """Delete a webhook endpoint and its delivery log (send If-Match)

        Needs `webhooks:write` and `If-Match`. The endpoint goes with its whole delivery log, and
        deliveries still pending are not sent. An endpoint that is not yours is 404.
        """
        endpoint = services.get_endpoint(owner_id(), webhook_id)
        require_if_match(endpoint)
        services.delete_endpoint(endpoint)


@blp.route("/<string:webhook_id>/rotate-secret")
class WebhookSecret(MethodView):
    @blp.requires("webhooks:write")
    @blp.doc(operationId="rotate_webhook_secret")
    @blp.response(200, NewSecretSchema)
    def post(self, webhook_id: str) -> WithSecret:
        """Rotate an endpoint's signing secret; both sign deliveries for a grace period

        Needs `webhooks:write` and a token with the scopes that read the endpoint's events. Returns
        the endpoint with its new `secret`, shown this once; until `previous_secret_expires_at` (24
        hours by default) deliveries carry signatures from both secrets, so update your receiver
        meanwhile.
        """
        endpoint = services.get_endpoint(owner_id(), webhook_id)
        secret = services.rotate_secret(endpoint, issuer=current_actor())
        send_etag(endpoint)
        return WithSecret(endpoint, secret)


@blp.route("/<string:webhook_id>/deliveries")
class Deliveries(MethodView):
    @blp.requires("webhooks:read")
    @blp.doc(operationId="list_webhook_deliveries")
    @blp.arguments(DeliveryQueryArgsSchema, location="query", as_kwargs=False)
    @blp.response(200, DeliveryPageSchema)
    def get(self, args: dict[str, Any], webhook_id: str) -> Any:
        """List an endpoint's deliveries, oldest first; filter by status

        Needs `webhooks:read`. Returns a page of the endpoint's deliveries, each with its `status`
        (`pending`, `succeeded` or `failed`) and its last attempt's outcome; filter with `status`
        and follow `next_cursor` or the `Link` header. Finished deliveries are kept 30 days by
        default.
        """
        endpoint = services.get_endpoint(owner_id(), webhook_id)
        return send_page(services.list_deliveries(endpoint, args))


@blp.route("/<string:webhook_id>/deliveries/<string:delivery_id>")
class DeliveryById(MethodView):
    @blp.requires("webhooks:read")
    @blp.doc(operationId="get_webhook_delivery")
    @blp.response(200, DeliveryDetailSchema)
    def get(self, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        """Get a delivery: the body it sends and each of its attempts

        The body shows the event's data: it needs the scope that reads it too (the event
        type's `x-mars-scope`, such as `projects:read`), or the answer is 403
        `insufficient_scope` naming it.
        """
        endpoint = services.get_endpoint(owner_id(), webhook_id)
        delivery = services.get_delivery(endpoint, delivery_id)
        authorize(services.scopes_to_read(delivery.event_type))
        return delivery


@blp.route("/<string:webhook_id>/deliveries/<string:delivery_id>/redeliver")
class Redelivery(MethodView):
    @blp.requires("webhooks:write")
    @blp.doc(operationId="redeliver_webhook_delivery", **{"x-mars-long-running": True})
    @blp.response(202, DeliverySchema)
    def post(
        self, webhook_id: str, delivery_id: str
    ) -> tuple[WebhookDelivery, int, dict[str, str]]:
        """Send a delivery again: a new series of attempts with the same webhook-id

        Needs `webhooks:write`. Queues a new series of attempts with the same body and
        `webhook-id`, replacing a series still waiting to retry, and answers 202 with the
        delivery back in `pending` and, in `Location` (and `operation_id`), the long-running
        operation that ends with the series: succeeded once the endpoint accepts it, failed
        once every attempt has. A disabled endpoint is 409: enable it first.
        """
        endpoint = services.get_endpoint(owner_id(), webhook_id)
        delivery = services.redeliver(endpoint, services.get_delivery(endpoint, delivery_id))
        return delivery, 202, {"Location": operations.location(str(delivery.operation_id))}
