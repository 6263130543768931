"""A tiny plugin that declares the events the webhook tests emit, installed through a fake
entry point (as ``install_plugins`` does for ``tests.fakes``)."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING

import marshmallow as ma

import mars_server.plugins
from mars_server import PluginInfo, hookimpl
from mars_server.hookspecs import EventType

if TYPE_CHECKING:
    import pytest

THING_CREATED = "thing.created"
THING_DELETED = "thing.deleted"


class ThingSchema(ma.Schema):
    id = ma.fields.String(required=True)
    name = ma.fields.String(required=True)


class Things:
    MARS_PLUGIN = PluginInfo(name="things", version="1.0", requires=">=0.1")

    @hookimpl
    def mars_event_types(self) -> list[EventType]:
        return [
            EventType(THING_CREATED, "A thing was created.", ThingSchema),
            EventType(THING_DELETED, "A thing was deleted.", ThingSchema),
        ]


things = Things()


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ``things`` plugin look installed to apps built after this call."""
    real = mars_server.plugins.entry_points
    extra = EntryPoint(
        "things", "tests.webhook_fakes:things", mars_server.plugins.ENTRY_POINT_GROUP
    )

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        found = list(real(group=group))
        return [*found, extra] if group == mars_server.plugins.ENTRY_POINT_GROUP else found

    monkeypatch.setattr(mars_server.plugins, "entry_points", fake_entry_points)
