"""Plugins that need plugins: ``PluginInfo(requires_plugins=[...])``."""

from __future__ import annotations

import pytest

from mars_server import create_app
from mars_server.plugins import PluginError, broken_plugins_kept
from mars_server.testing import settings_for_tests


def start(tmp_path, **settings):
    return create_app(settings_for_tests("sqlite://", tmp_path, **settings))


def refused(tmp_path, **settings) -> str:
    with pytest.raises(PluginError) as info:
        start(tmp_path, **settings)
    assert "\n" not in str(info.value)
    return str(info.value)


def states(app) -> dict[str, tuple[str, str]]:
    return {p.info.name: (p.state, p.problem) for p in app.extensions["mars"].plugins.loaded}


def test_a_plugin_whose_needs_are_met_starts(install_plugins, tmp_path):
    install_plugins(good="good", needsgood="needs_good", needschain="needs_needs_good")
    loaded = states(start(tmp_path))
    assert loaded["needsgood"] == ("enabled", "")
    assert loaded["needschain"] == ("enabled", "")


@pytest.mark.parametrize(
    ("plugins", "settings", "message"),
    [
        (
            {"needsgood": "needs_good"},
            {},
            "plugin 'needsgood' needs 'good>=1.0', which is not installed",
        ),
        (
            {"good": "good", "needsnewer": "needs_newer_good"},
            {},
            "plugin 'needsnewer' needs 'good>=2', which is 1.2.3",
        ),
        (
            {"needsghost": "needs_nothing_there"},
            {},
            "plugin 'needsghost' needs 'ghost', which is not installed",
        ),
        (
            # Disabling a plugin another one needs is refused the same way.
            {"good": "good", "needsgood": "needs_good"},
            {"PLUGINS_DISABLED": ["good"]},
            "plugin 'needsgood' needs 'good>=1.0', which is disabled (MARS_PLUGINS_DISABLED): "
            "enable it, or disable 'needsgood' too",
        ),
    ],
)
def test_start_up_refuses_an_unmet_need_naming_both(
    install_plugins, tmp_path, plugins, settings, message
):
    install_plugins(**plugins)
    assert refused(tmp_path, **settings) == message


def test_disabling_both_is_fine(install_plugins, tmp_path):
    install_plugins(good="good", needsgood="needs_good")
    loaded = states(start(tmp_path, PLUGINS_DISABLED=["good", "needsgood"]))
    assert loaded["good"][0] == loaded["needsgood"][0] == "disabled"


def test_a_requirement_that_is_no_plugin_name_is_refused(install_plugins, tmp_path):
    install_plugins(good="good", needsbadly="needs_badly")
    assert refused(tmp_path) == (
        "plugin 'needsbadly': requires_plugins 'good >= = 1' is not a plugin name with an "
        "optional version specifier (e.g. 'projects>=0.1')"
    )


def test_plugins_list_and_check_show_unmet_needs_down_the_chain(install_plugins, tmp_path):
    """Where broken plugins are shown (``mars plugins list``, ``mars check``), a plugin whose
    need is unmet is broken, and so is a plugin that needs it."""
    install_plugins(needsgood="needs_good", needschain="needs_needs_good")
    with broken_plugins_kept():
        loaded = states(start(tmp_path))
    assert loaded["needsgood"] == (
        "broken",
        "plugin 'needsgood' needs 'good>=1.0', which is not installed",
    )
    assert loaded["needschain"][0] == "broken"
    assert loaded["needschain"][1].startswith("plugin 'needschain' needs 'needsgood', which cannot")


def test_a_declared_api_module_must_exist(install_plugins, tmp_path):
    install_plugins(offers="offers_api")
    assert states(start(tmp_path))["offers"] == ("enabled", "")
    install_plugins(offersnot="offers_missing_api")
    assert refused(tmp_path) == (
        "plugin 'offersnot': api 'tests.no_such_module' is no module of it"
    )
