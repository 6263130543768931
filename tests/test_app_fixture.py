"""The ``app`` fixture reuses its app from test to test, put back as it was built.

These tests run in file order, in one process (pytest-xdist sends a file to one worker): the
first leaves every kind of state behind; the next ones look for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mars_server.cache import get_cache
from mars_server.db import db
from mars_server.state import mars_state

#: what the first test saw, for the next ones
seen: dict[str, object] = {}


def _remaining(response) -> int:
    """``r`` of the ``RateLimit`` field: what the caller may still send in the window."""
    return int(response.headers["RateLimit"].split(";r=")[1].split(";")[0])


def test_a_test_leaves_state_behind(app, client, tmp_path, outbox):
    seen["app"] = id(app)
    anonymous = app.test_client()  # counted by its address, the same in every test
    seen["remaining"] = _remaining(anonymous.get("/api/v1/meta"))
    assert Path(app.instance_path) == tmp_path / "instance"
    app.config["MARS"]["PAGE_SIZE_DEFAULT"] = 3
    app.config["LEFT_BEHIND"] = True
    mars_state(app).scopes["left:behind"] = "a scope a test added"
    app.extensions["left.behind"] = object()
    get_cache(app).namespace("fixture").set("left", "behind")
    for _ in range(5):
        anonymous.get("/api/v1/meta")
    (Path(app.instance_path) / "mail").mkdir(exist_ok=True)
    (Path(app.instance_path) / "mail" / "left.eml").write_text("behind")
    assert client.post("/api/v1/projects", json={"slug": "left", "name": "Left"}).status_code == 201


def test_the_next_test_gets_the_same_app_as_it_was_built(app, client, tmp_path):
    assert id(app) == seen["app"], "the app is reused"
    assert app.config["MARS"]["PAGE_SIZE_DEFAULT"] == 50
    assert "LEFT_BEHIND" not in app.config
    assert "left:behind" not in mars_state(app).scopes
    assert "left.behind" not in app.extensions
    assert get_cache(app).namespace("fixture").get("left") is None
    # The rate limiter counts from nothing again: the first request leaves what it did first.
    assert _remaining(app.test_client().get("/api/v1/meta")) == seen["remaining"]
    # An instance folder of this test's own: the last test's mail is not in it.
    assert Path(app.instance_path) == tmp_path / "instance"
    assert Path(app.config["MARS"]["INSTANCE_PATH"]) == tmp_path / "instance"
    assert not (tmp_path / "instance" / "mail").exists()
    assert client.get("/api/v1/projects").json["items"] == []
    assert db.session.execute(db.text("SELECT count(*) FROM projects")).scalar() == 0


@pytest.mark.mars_fresh_app
def test_a_test_marked_mars_fresh_app_gets_a_new_one(app):
    assert id(app) != seen["app"]

    @app.get("/own")
    def own():
        return "its own route"

    assert app.test_client().get("/own").text == "its own route"


def test_plugins_made_to_look_installed_get_a_new_app(install_plugins, database_url, request):
    install_plugins(eventful="events")
    app = request.getfixturevalue("app")
    assert id(app) != seen["app"]
    assert "eventful" in {info.name for info in mars_state(app).plugins.enabled}


@pytest.mark.parametrize("app_config", [{"PAGE_SIZE_DEFAULT": 7}])
def test_other_settings_get_an_app_of_their_own(app, app_config):
    assert id(app) != seen["app"]
    assert app.config["MARS"]["PAGE_SIZE_DEFAULT"] == 7
