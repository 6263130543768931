"""A tiny plugin that declares the events the webhook tests emit, installed through a fake
entry point (as ``install_plugins`` does for ``tests.fakes``)."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING, Any

import marshmallow as ma

import mars_server.plugins
from mars_server import PluginInfo, hookimpl
from mars_server.hookspecs import EventType

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pytest
    from flask import Flask

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
            EventType(THING_CREATED, "A thing was created.", ThingSchema, scope=None),
            EventType(THING_DELETED, "A thing was deleted.", ThingSchema, scope=None),
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


def app_with_things(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> Iterator[Flask]:
    """For a fixture: an app built with ``settings`` and the ``things`` plugin installed, its
    context pushed while the test runs (``yield from app_with_things(...)``)."""
    install(monkeypatch)
    app = make_app(**settings)
    with app.app_context():
        yield app
