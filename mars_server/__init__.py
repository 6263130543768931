"""MARS: the plugin-based API platform core.

The names here are the public plugin API's entry points: ``create_app`` builds the
application, ``hookimpl`` marks a plugin's hook implementations and ``PluginInfo`` is
what every plugin module declares as ``MARS_PLUGIN``.

Importing this package imports nothing but pluggy: the other names load on first use, so
``mars_server.hookspecs`` (and a plugin module's ``hookimpl``) need neither Flask nor
SQLAlchemy, and no module of MARS imports the app through its package.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

#: Marks a function as the implementation of a MARS hook (see :mod:`mars_server.hookspecs`).
hookimpl = pluggy.HookimplMarker("mars")

if TYPE_CHECKING:
    from mars_server.app import create_app
    from mars_server.config import plugin_settings, public_url
    from mars_server.plugins import PluginInfo

_LAZY = {
    "create_app": "mars_server.app",
    "plugin_settings": "mars_server.config",
    "public_url": "mars_server.config",
    "PluginInfo": "mars_server.plugins",
}

__all__ = ["PluginInfo", "__version__", "create_app", "hookimpl", "plugin_settings", "public_url"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mars_server' has no attribute {name!r}")
