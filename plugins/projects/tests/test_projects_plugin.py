"""The projects plugin's CLI, health check and settings."""

from __future__ import annotations

import sqlalchemy as sa

from mars_projects.models import Project


def test_cli_create_list_delete(runner, db, create_user):
    owner = create_user()
    nobody = runner.invoke(args=["projects", "create", "x", "--name", "X", "--owner", "usr_no"])
    assert nobody.exit_code == 1
    assert "no user" in nobody.output
    created = runner.invoke(
        args=["projects", "create", "ops-made", "--name", "By ops", "--owner", owner.id]
    )
    assert created.exit_code == 0, created.output
    project_id = created.output.strip().splitlines()[-1]
    assert project_id.startswith("prj_")
    listed = runner.invoke(args=["projects", "list"])
    assert f"{project_id}  ops-made  private  By ops" in listed.output
    assert "1 projects in all" in listed.output
    again = runner.invoke(
        args=["projects", "create", "ops-made", "--name", "Again", "--owner", owner.id]
    )
    assert again.exit_code == 1
    assert "taken" in again.output
    deleted = runner.invoke(args=["projects", "delete", project_id])
    assert deleted.exit_code == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Project)) == 0
    missing = runner.invoke(args=["projects", "delete", project_id])
    assert missing.exit_code == 1


def test_health_check_is_part_of_readyz(client):
    assert client.get("/readyz").json["checks"]["projects"] == "ok"


def test_health_check_fails_without_its_table(client, db):
    import flask_migrate

    flask_migrate.downgrade(revision="projects@base")
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json["checks"]["projects"] == "failed"
        assert response.json["checks"]["migrations"] == "failed"
    finally:
        flask_migrate.upgrade(revision="heads")


def test_settings_default(app):
    assert app.extensions["mars"].plugin_settings["projects"] == {"description_max_length": 10_000}
