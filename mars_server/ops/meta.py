"""``/api/v1/meta``: what this MARS is, and which plugins it runs."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from mars_server import __version__
from mars_server.state import mars_state

API_VERSION = "v1"

# No prefix of its own: it answers /api/v1 itself too (the API's index).
blp = Blueprint("meta", __name__, description="What this MARS server is and what it runs.")


class MetaSchema(ma.Schema):
    name = ma.fields.String(required=True)
    version = ma.fields.String(required=True, metadata={"description": "MARS's version."})
    api_version = ma.fields.String(required=True, metadata={"example": "v1"})


class PluginSchema(ma.Schema):
    name = ma.fields.String(required=True)
    version = ma.fields.String(required=True)
    description = ma.fields.String(required=True)
    source = ma.fields.String(
        required=True, metadata={"description": "`builtin`, or the distribution that installed it."}
    )
    state = ma.fields.String(required=True, validate=ma.validate.OneOf(["enabled", "disabled"]))


class PluginListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(PluginSchema), required=True)


def plugin_rows() -> list[dict[str, Any]]:
    return [
        {
            "name": p.info.name,
            "version": p.info.version,
            "description": p.info.description,
            "source": p.source,
            "state": p.state,
        }
        for p in mars_state().plugins.loaded
    ]


class IndexSchema(MetaSchema):
    links = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        required=True,
        metadata={
            "description": "Where to go from here: `docs` (the interactive documentation), "
            "`openapi` (this API's OpenAPI document), `graphql` (the GraphQL endpoint), "
            "`graphiql` (GraphiQL, to explore it), `meta`, `plugins`, `operations` (a "
            "long-running operation, by id) and `health`.",
            "example": {"docs": "/api/docs", "openapi": "/api/v1/openapi.json"},
        },
    )


@blp.route("")
class Index(MethodView):
    @blp.doc(operationId="get_api_index")
    @blp.response(200, IndexSchema)
    def get(self) -> dict[str, Any]:
        """Show where the API's documentation and resources are

        Needs no token. Returns the server's name, its MARS and API versions, and `links` to the
        interactive documentation, the OpenAPI document, the GraphQL endpoint and GraphiQL, the
        meta and plugin lists, long-running operations and the health check.
        """
        return {
            "name": "MARS",
            "version": __version__,
            "api_version": API_VERSION,
            "links": {
                "docs": "/api/docs",
                "openapi": f"/api/{API_VERSION}/openapi.json",
                "graphql": f"/api/{API_VERSION}/graphql",
                "graphiql": "/api/graphql",
                "meta": f"/api/{API_VERSION}/meta",
                "plugins": f"/api/{API_VERSION}/meta/plugins",
                "operations": f"/api/{API_VERSION}/operations/{{id}}",
                "health": "/readyz",
            },
        }


@blp.route("/meta")
class Meta(MethodView):
    @blp.doc(operationId="get_meta")
    @blp.response(200, MetaSchema)
    def get(self) -> dict[str, str]:
        """Show the MARS and API versions

        Needs no token. Returns the server's `name`, the MARS release in `version` and the API
        version in `api_version` (`v1`).
        """
        return {"name": "MARS", "version": __version__, "api_version": API_VERSION}


@blp.route("/meta/plugins")
class Plugins(MethodView):
    @blp.doc(operationId="list_plugins")
    @blp.response(200, PluginListSchema)
    def get(self) -> dict[str, Any]:
        """List the installed plugins, their versions and states

        Needs no token. Returns every plugin the server loaded, built in or installed, with its
        `version`, `description`, `source` (`builtin` or the distribution that installed it) and
        `state`, so disabled plugins are listed too.
        """
        return {"items": plugin_rows()}
