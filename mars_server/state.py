"""``mars_state()``: what MARS keeps per app (its plugins, settings, scopes, event types...),
typed, instead of ``current_app.extensions["mars"]``."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask import current_app

if TYPE_CHECKING:
    from flask import Flask

    from mars_server.app import MarsState


def mars_state(app: Flask | None = None) -> MarsState:
    """The :class:`~mars_server.app.MarsState` of ``app`` (default: the current app)."""
    return cast("MarsState", (app or current_app).extensions["mars"])
