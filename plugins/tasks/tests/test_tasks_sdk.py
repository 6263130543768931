"""The tasks operations through the Python SDK, against a live MARS (the public ``sdk``
fixture). MARS's SDK coverage meta-test runs these: they are marked ``mars_sdk_live``."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.mars_sdk_live

mars_sdk = pytest.importorskip("mars_sdk")


def test_tasks_add_list_get_tick_off_and_delete(sdk):
    client = sdk()
    project = client.projects.create(slug="moon", name="Moon")
    task = client.tasks.create(project_id=project.id, name="Land")
    assert isinstance(task, mars_sdk.models.Task)
    assert (task.name, task.done, task.project_id) == ("Land", False, project.id)

    assert [t.id for t in client.tasks.list(project_id=project.id)] == [task.id]
    fetched = client.tasks.get(project_id=project.id, task_id=task.id)
    assert fetched == task

    done = client.tasks.update(project_id=project.id, task_id=task.id, if_match=fetched, done=True)
    assert done.done is True
    assert [t.id for t in client.tasks.list(project_id=project.id, done=False)] == []

    client.tasks.delete(project_id=project.id, task_id=task.id, if_match=done.etag)
    with pytest.raises(mars_sdk.NotFound):
        client.tasks.get(project_id=project.id, task_id=task.id)
