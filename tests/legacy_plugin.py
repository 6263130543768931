"""A plugin with a deprecated operation, installed through a fake entry point by
test_deprecation.py: it shows a plugin how to retire an operation."""

from __future__ import annotations

import datetime as dt

import marshmallow as ma
from flask.views import MethodView

from mars_server import PluginInfo, hookimpl
from mars_server.http import Blueprint

MARS_PLUGIN = PluginInfo(
    name="legacy", version="1.0.0", requires=">=0.1", description="an operation on its way out"
)

blp = Blueprint("legacy", __name__, url_prefix="/legacy", description="Old things.")


class ThingSchema(ma.Schema):
    name = ma.fields.String(required=True)


class ThingQuerySchema(ma.Schema):
    prefix = ma.fields.String(load_default="")


@blp.route("/things")
class Things(MethodView):
    @blp.deprecated(
        since=dt.date(2026, 1, 1),
        sunset=dt.date(2027, 6, 30),
        link="https://docs.example.org/migrate/things",
    )
    @blp.doc(operationId="list_legacy_things")
    @blp.arguments(ThingQuerySchema, location="query", as_kwargs=True)
    @blp.response(200, ThingSchema(many=True))
    def get(self, prefix: str) -> list[dict[str, str]]:
        """List the old things

        Deprecated: list the new things instead.
        """
        return [{"name": name} for name in ("gear",) if name.startswith(prefix)]


@hookimpl
def mars_api_blueprints() -> list[Blueprint]:
    return [blp]
