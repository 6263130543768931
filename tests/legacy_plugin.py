"""A plugin with a deprecated operation, a deprecated parameter, a deprecated body field, and
the ``/api/v2`` operation that replaces the deprecated one, installed through a fake entry
point by test_deprecation.py: it shows a plugin how to retire what it must break."""

from __future__ import annotations

import datetime as dt

import marshmallow as ma
from flask.views import MethodView

from mars_server import PluginInfo, hookimpl
from mars_server.http import Blueprint, deprecated_field

MARS_PLUGIN = PluginInfo(
    name="legacy", version="1.0.0", requires=">=0.1", description="an operation on its way out"
)

blp = Blueprint("legacy", __name__, url_prefix="/legacy", description="Old things.")
#: The operation version 1 cannot keep: /api/v2/legacy/things answers a page, not a list.
blp_v2 = Blueprint(
    "legacy-v2", __name__, url_prefix="/legacy", description="Old things, paged.", api_version=2
)
SINCE, SUNSET = dt.date(2026, 1, 1), dt.date(2027, 6, 30)


class ThingSchema(ma.Schema):
    name = ma.fields.String(required=True)


class ThingQuerySchema(ma.Schema):
    prefix = ma.fields.String(load_default="")


class ThingPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ThingSchema), required=True)
    next_cursor = ma.fields.String(required=True, allow_none=True)


class GadgetQuerySchema(ma.Schema):
    name = ma.fields.String(metadata={"description": "Only gadgets of this name."})
    colour = deprecated_field(
        ma.fields.String(metadata={"description": "Ignored: gadgets have no colour."}),
        since=SINCE,
        sunset=SUNSET,
        link="https://docs.example.org/migrate/colour",
    )


class GadgetSchema(ma.Schema):
    name = ma.fields.String(required=True)
    label = deprecated_field(
        ma.fields.String(metadata={"description": "The name, as it was once called."}),
        since=SINCE,
    )


@blp.route("/gadgets")
class Gadgets(MethodView):
    @blp.doc(operationId="list_legacy_gadgets")
    @blp.arguments(GadgetQuerySchema, location="query", as_kwargs=True)
    @blp.response(200, GadgetSchema(many=True))
    def get(self, name: str | None = None, colour: str | None = None) -> list[dict[str, str]]:
        """List the gadgets

        `colour` is deprecated: it is ignored, and its use is answered with `Deprecation`.
        """
        return [{"name": n} for n in ("sprocket",) if name in (None, n)]

    @blp.doc(operationId="make_legacy_gadget")
    @blp.arguments(GadgetSchema)
    @blp.response(201, GadgetSchema)
    def post(self, data: dict[str, str]) -> dict[str, str]:
        """Make a gadget

        `label` is deprecated: send `name`. Its use is answered with `Deprecation`.
        """
        return {"name": data["name"]}


@blp.route("/things")
class Things(MethodView):
    @blp.deprecated(since=SINCE, sunset=SUNSET, link="https://docs.example.org/migrate/things")
    @blp.doc(operationId="list_legacy_things")
    @blp.arguments(ThingQuerySchema, location="query", as_kwargs=True)
    @blp.response(200, ThingSchema(many=True))
    def get(self, prefix: str) -> list[dict[str, str]]:
        """List the old things

        Deprecated: list the new things instead.
        """
        return [{"name": name} for name in ("gear",) if name.startswith(prefix)]


MADE: list[str] = []  # what POST /api/v2/legacy/things made, in this process


@blp_v2.route("/things")
class ThingsV2(MethodView):
    @blp_v2.doc(operationId="make_legacy_thing_v2")
    @blp_v2.arguments(ThingSchema)
    @blp_v2.response(201, ThingSchema)
    def post(self, data: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """Make an old thing

        Counts what it makes, so that a test sees a replay make nothing.
        """
        MADE.append(data["name"])
        return data, {"Location": f"/api/v2/legacy/things/{len(MADE)}"}

    @blp_v2.doc(operationId="list_legacy_things_v2")
    @blp_v2.arguments(ThingQuerySchema, location="query", as_kwargs=True)
    @blp_v2.response(200, ThingPageSchema)
    def get(self, prefix: str) -> dict[str, object]:
        """List the old things, a page at a time

        Replaces `GET /api/v1/legacy/things`, which answered a bare list.
        """
        return {
            "items": [{"name": n} for n in ("gear",) if n.startswith(prefix)],
            "next_cursor": None,
        }


@hookimpl
def mars_api_blueprints() -> list[Blueprint]:
    return [blp, blp_v2]
