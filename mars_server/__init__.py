"""MARS: the plugin-based API platform core.

The names here are the public plugin API's entry points: ``create_app`` builds the
application, ``hookimpl`` marks a plugin's hook implementations and ``PluginInfo`` is
what every plugin module declares as ``MARS_PLUGIN``.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marks a function as the implementation of a MARS hook (see :mod:`mars_server.hookspecs`).
hookimpl = pluggy.HookimplMarker("mars")

from mars_server.app import create_app  # noqa: E402
from mars_server.config import plugin_settings, public_url  # noqa: E402
from mars_server.plugins import PluginInfo  # noqa: E402

__all__ = ["PluginInfo", "__version__", "create_app", "hookimpl", "plugin_settings", "public_url"]
