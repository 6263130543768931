"""The projects operations through the Python SDK, against a live MARS (the public ``sdk``
fixture). MARS's SDK coverage meta-test runs these: they are marked ``mars_sdk_live``."""

from __future__ import annotations

from datetime import datetime

import pytest

pytestmark = pytest.mark.mars_sdk_live

mars_sdk = pytest.importorskip("mars_sdk")


def test_projects_create_get_list_update_delete(sdk):
    client = sdk()
    created = client.projects.create(slug="rover", name="Rover", visibility="public")
    assert isinstance(created, mars_sdk.models.Project)
    assert (created.slug, created.name, created.visibility) == ("rover", "Rover", "public")
    assert isinstance(created.created_at, datetime) and created.created_at.tzinfo is not None
    assert created.etag

    fetched = client.projects.get(project_id=created.id)
    assert fetched == created and fetched.etag == created.etag
    assert client.projects.get(project_id=created.id, if_none_match=fetched) is fetched

    assert [p.id for p in client.projects.list()] == [created.id]
    assert [p.id for p in client.projects.list(visibility="private")] == []

    updated = client.projects.update(project_id=created.id, if_match=fetched, name="Rover II")
    assert (updated.name, updated.slug, updated.description) == ("Rover II", "rover", "")
    assert updated.etag != fetched.etag
    with pytest.raises(mars_sdk.PreconditionFailed):  # the copy read before the update is stale
        client.projects.update(project_id=created.id, if_match=fetched, name="Lost")
    newer = client.projects.get(project_id=created.id, if_none_match=fetched)
    assert newer is not fetched and newer.name == "Rover II"

    client.projects.delete(project_id=created.id, if_match=updated.etag)
    with pytest.raises(mars_sdk.NotFound):
        client.projects.get(project_id=created.id)
