"""The ``app`` fixture keeps its app for the next test, put back as it was built.

Each test stands alone (under pytest-xdist, tests of one file may run in different
processes): the kept app is looked up where the fixture keeps it, and putting it back is
done here as the fixture does it between two tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mars_server import testing
from mars_server.cache import get_cache
from mars_server.db import db
from mars_server.state import mars_state


def _remaining(response) -> int:
    """``r`` of the ``RateLimit`` field: what the caller may still send in the window."""
    return int(response.headers["RateLimit"].split(";r=")[1].split(";")[0])


def _kept(app) -> bool:
    return any(kept is app for kept, _ in testing._REUSABLE.values())


def test_the_app_is_kept_for_the_next_test(app, tmp_path):
    assert _kept(app)
    assert Path(app.instance_path) == tmp_path / "instance"


def test_a_kept_app_is_put_back_as_it_was_built(app, client, tmp_path):
    [pristine] = [kept for candidate, kept in testing._REUSABLE.values() if candidate is app]
    anonymous = app.test_client()  # counted by its address, the same in every test
    first = _remaining(anonymous.get("/api/v1/meta"))
    # What a test may leave behind:
    app.config["MARS"]["PAGE_SIZE_DEFAULT"] = 3
    app.config["LEFT_BEHIND"] = True
    mars_state(app).scopes["left:behind"] = "a scope a test added"
    app.extensions["left.behind"] = object()
    get_cache(app).namespace("fixture").set("left", "behind")
    for _ in range(5):
        anonymous.get("/api/v1/meta")
    (Path(app.instance_path) / "mail").mkdir(exist_ok=True)
    (Path(app.instance_path) / "mail" / "left.eml").write_text("behind")

    # What the fixture does before the next test:
    testing._restore(app, pristine, tmp_path / "next" / "instance")

    assert app.config["MARS"]["PAGE_SIZE_DEFAULT"] == 50
    assert "LEFT_BEHIND" not in app.config
    assert "left:behind" not in mars_state(app).scopes
    assert "left.behind" not in app.extensions
    assert get_cache(app).namespace("fixture").get("left") is None
    assert _remaining(app.test_client().get("/api/v1/meta")) == first  # counts from nothing
    next_instance = tmp_path / "next" / "instance"
    assert Path(app.instance_path) == next_instance
    assert Path(app.config["MARS"]["INSTANCE_PATH"]) == next_instance
    assert next_instance.is_dir() and not (next_instance / "mail").exists()


def test_the_database_is_empty_for_each_test(app, client):
    assert client.get("/api/v1/projects").json["items"] == []
    assert client.post("/api/v1/projects", json={"slug": "left", "name": "Left"}).status_code == 201
    testing.empty_tables(db)
    assert db.session.execute(db.text("SELECT count(*) FROM projects")).scalar() == 0


@pytest.mark.mars_fresh_app
def test_a_test_marked_mars_fresh_app_gets_a_new_one(app):
    assert not _kept(app)

    @app.get("/own")
    def own():
        return "its own route"

    assert app.test_client().get("/own").text == "its own route"


def test_plugins_made_to_look_installed_get_a_new_app(install_plugins, database_url, request):
    install_plugins(eventful="events")
    app = request.getfixturevalue("app")
    assert not _kept(app)
    assert "eventful" in {info.name for info in mars_state(app).plugins.enabled}


@pytest.mark.parametrize("app_config", [{"PAGE_SIZE_DEFAULT": 7}, {"REDIS_URL": None}])
def test_settings_choose_the_app(app, app_config):
    assert app.config["MARS"]["PAGE_SIZE_DEFAULT"] == app_config.get("PAGE_SIZE_DEFAULT", 50)
    # Other settings: an app of their own, kept too; Redis settings: never kept.
    assert _kept(app) is ("REDIS_URL" not in app_config)
    if "PAGE_SIZE_DEFAULT" in app_config:  # no other kept app has this test's settings
        others = [kept for kept, _ in testing._REUSABLE.values() if kept is not app]
        assert all(other.config["MARS"]["PAGE_SIZE_DEFAULT"] != 7 for other in others)
