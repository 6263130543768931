"""The tasks of a project: who sees and changes them, their events, and what happens to them
when their project goes, through MARS's own test fixtures."""

from __future__ import annotations

import pytest

from mars_server.plugins import PluginError
from mars_server.testing import make_user, run_due_jobs, signed_in_client


@pytest.fixture
def owner(app):
    return signed_in_client(app)


@pytest.fixture
def project(owner):
    """``project(visibility=...)``: a project of ``owner``'s; returns its tasks' path."""

    def make(visibility="private", slug="apollo"):
        created = owner.post(
            "/api/v1/projects", json={"slug": slug, "name": slug, "visibility": visibility}
        )
        assert created.status_code == 201, created.json
        return f"/api/v1/projects/{created.json['id']}/tasks"

    return make


def test_members_add_list_tick_off_and_delete_tasks(owner, project):
    tasks = project()
    created = owner.post(tasks, json={"name": "Launch"})
    assert created.status_code == 201, created.json
    task = created.json
    assert (task["name"], task["done"], task["created_by"]) == ("Launch", False, owner.user.id)
    assert task["id"].startswith("tsk_") and created.headers["Location"].endswith(
        f"{tasks}/{task['id']}"
    )
    assert owner.get(tasks).json == {"items": [task], "next_cursor": None}

    done = owner.patch(
        f"{tasks}/{task['id']}", json={"done": True}, headers={"If-Match": created.headers["ETag"]}
    )
    assert done.status_code == 200 and done.json["done"] is True
    assert owner.get(tasks, query_string={"done": "false"}).json["items"] == []
    assert [t["id"] for t in owner.get(tasks, query_string={"done": "true"}).json["items"]] == [
        task["id"]
    ]

    deleted = owner.delete(f"{tasks}/{task['id']}", headers={"If-Match": done.headers["ETag"]})
    assert deleted.status_code == 204
    assert owner.get(f"{tasks}/{task['id']}").status_code == 404


def test_who_sees_and_who_changes(app, owner, project):
    private, public = project(), project("public", slug="open")
    outsider = signed_in_client(app)
    anonymous = app.test_client()
    for tasks in (private, public):
        assert owner.post(tasks, json={"name": "Mine"}).status_code == 201
    task_id = owner.get(private).json["items"][0]["id"]

    assert outsider.get(private).status_code == 404  # a private project they cannot see
    assert outsider.get(f"{private}/{task_id}").status_code == 404
    assert anonymous.get(private).status_code == 404
    assert (
        len(outsider.get(public).json["items"]) == 1
        and len(anonymous.get(public).json["items"]) == 1
    )
    refused = outsider.post(public, json={"name": "Theirs"})
    assert refused.status_code == 403 and "members" in refused.json["detail"]

    member = signed_in_client(app, make_user(app))
    added = owner.post(
        f"{private.removesuffix('/tasks')}/members",
        json={"user_id": member.user.id, "role": "member"},
    )
    assert added.status_code == 200
    assert member.post(private, json={"name": "Theirs too"}).status_code == 201
    assert owner.get("/api/v1/projects/prj_missing/tasks").status_code == 404
    assert owner.post(private, json={"name": ""}).status_code == 422


def test_events_tell_the_project_members(owner, project, outbox):
    tasks = project()
    created = owner.post(tasks, json={"name": "Evented"})
    event = outbox.new()[-1]
    assert (event.type, event.payload["id"], event.audience) == (
        "task.created",
        created.json["id"],
        [owner.user.id],
    )
    owner.patch(
        f"{tasks}/{created.json['id']}",
        json={"done": True},
        headers={"If-Match": created.headers["ETag"]},
    )
    updated = outbox.one()
    assert (updated.type, updated.payload["changed"], updated.payload["done"]) == (
        "task.updated",
        ["done"],
        True,
    )


def test_tasks_go_with_their_project(app, owner, project, db):
    tasks = project()
    owner.post(tasks, json={"name": "Doomed"})
    project_path = tasks.removesuffix("/tasks")
    etag = owner.get(project_path).headers["ETag"]
    assert owner.delete(project_path, headers={"If-Match": etag}).status_code == 204
    run_due_jobs(app)
    assert owner.get(tasks).status_code == 404
    from mars_tasks import services

    assert services.count_tasks() == 0


def test_hook_mars_schedules_removes_orphans_left_while_disabled(app, owner, project, make_app, db):
    """A project deleted while tasks was disabled: the daily job removes its tasks."""
    tasks = project()
    owner.post(tasks, json={"name": "Orphan"})
    off = make_app(PLUGINS_DISABLED=["tasks"])
    client = off.test_client()
    client.environ_base.update(owner.environ_base)
    project_path = tasks.removesuffix("/tasks")
    etag = client.get(project_path).headers["ETag"]
    assert client.delete(project_path, headers={"If-Match": etag}).status_code == 204
    run_due_jobs(off)

    from mars_server.events import enqueue
    from mars_tasks import services

    assert services.count_tasks() == 1
    enqueue("tasks.remove_orphans")
    db.session.commit()
    run_due_jobs(app)
    assert services.count_tasks() == 0
    [schedule] = [
        s for s in app.extensions["mars"].schedules.values() if s.task == "tasks.remove_orphans"
    ]
    assert schedule.every.days == 1


def test_operators_list_and_delete_from_the_command_line(owner, project, runner):
    tasks = project()
    task = owner.post(tasks, json={"name": "Listed"}).json
    listed = runner.invoke(args=["tasks", "list", "--project", task["project_id"]])
    assert listed.exit_code == 0, listed.output
    assert f"{task['id']}  {task['project_id']}  to do  Listed" in listed.output
    deleted = runner.invoke(args=["tasks", "delete", task["id"]])
    assert deleted.exit_code == 0 and f"deleted {task['id']}" in deleted.output
    assert runner.invoke(args=["tasks", "delete", task["id"]]).exit_code == 1


def test_it_needs_projects_enabled(make_app):
    with pytest.raises(PluginError) as refused:
        make_app(PLUGINS_DISABLED=["projects"])
    assert str(refused.value) == (
        "plugin 'tasks' needs 'projects>=0.1', which is disabled (MARS_PLUGINS_DISABLED): "
        "enable it, or disable 'tasks' too"
    )
    assert make_app(PLUGINS_DISABLED=["tasks", "projects"]) is not None
