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


def test_projects_sorted_searched_and_with_chosen_fields(sdk):
    client = sdk()
    for slug, name in (("b-rover", "Rover B"), ("a-rover", "Rover A"), ("lander", "Lander")):
        client.projects.create(slug=slug, name=name, description="On Mars")
    # Whole projects, sorted and searched.
    rovers = list(client.projects.list(q="rover", sort="-name", limit=1))
    assert [p.name for p in rovers] == ["Rover B", "Rover A"]
    assert all(isinstance(p, mars_sdk.models.Project) for p in rovers)
    # With fields=, partial ones: what was not asked for is UNSET.
    partial = list(client.projects.list(fields=["name"], sort="slug"))
    assert [p.name for p in partial] == ["Rover A", "Rover B", "Lander"]
    assert all(isinstance(p, mars_sdk.models.PartialProject) for p in partial)
    assert partial[0].id and partial[0].slug is mars_sdk.UNSET and not partial[0].created_at
