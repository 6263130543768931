"""The tasks API, its events and its commands, through MARS's own test fixtures."""

from __future__ import annotations

import pytest

PATH = "/api/v1/tasks"


@pytest.fixture
def owner(create_user):
    return create_user()


@pytest.fixture
def headers(owner, auth_headers):
    return auth_headers(owner)


def test_create_get_list_change_and_delete(client, owner, headers):
    created = client.post(PATH, json={"name": "First"}, headers=headers)
    assert created.status_code == 201, created.json
    item = created.json
    assert item["name"] == "First" and item["description"] == ""
    assert item["id"].startswith("tsk_")
    assert created.headers["Location"].endswith(f"{PATH}/{item['id']}")

    fetched = client.get(f"{PATH}/{item['id']}", headers=headers)
    assert fetched.status_code == 200 and fetched.json == item
    listed = client.get(PATH, headers=headers)
    assert listed.json == {"items": [item], "next_cursor": None}

    changed = client.patch(
        f"{PATH}/{item['id']}",
        json={"description": "Now described"},
        headers=headers | {"If-Match": fetched.headers["ETag"]},
    )
    assert changed.status_code == 200, changed.json
    assert changed.json["name"] == "First" and changed.json["description"] == "Now described"

    stale = client.delete(
        f"{PATH}/{item['id']}", headers=headers | {"If-Match": fetched.headers["ETag"]}
    )
    assert stale.status_code == 412
    deleted = client.delete(
        f"{PATH}/{item['id']}", headers=headers | {"If-Match": changed.headers["ETag"]}
    )
    assert deleted.status_code == 204
    assert client.get(f"{PATH}/{item['id']}", headers=headers).status_code == 404


def test_bad_input_is_a_problem_and_stores_nothing(client, headers):
    refused = client.post(PATH, json={"name": ""}, headers=headers)
    assert refused.status_code == 422
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert client.get(PATH, headers=headers).json["items"] == []


def test_only_the_owner_sees_and_changes_it(client, headers, create_user, auth_headers):
    item = client.post(PATH, json={"name": "Mine"}, headers=headers).json
    other = auth_headers(create_user())
    assert client.get(f"{PATH}/{item['id']}", headers=other).status_code == 404
    assert client.get(PATH, headers=other).json["items"] == []
    patched = client.patch(
        f"{PATH}/{item['id']}", json={"name": "Theirs"}, headers=other | {"If-Match": "*"}
    )
    assert patched.status_code == 404
    assert client.get(PATH).status_code == 401  # no token


def test_a_token_needs_the_scopes(client, owner, auth_headers):
    reader = auth_headers(owner, scopes=["tasks:read"])
    assert client.get(PATH, headers=reader).status_code == 200
    refused = client.post(PATH, json={"name": "No"}, headers=reader)
    assert refused.status_code == 403


def test_each_change_emits_its_event_to_the_owner(client, owner, headers, outbox):
    item = client.post(PATH, json={"name": "Evented"}, headers=headers)
    created = outbox.one()
    assert created.type == "task.created"
    assert created.payload["id"] == item.json["id"] and created.payload["owner_id"] == owner.id
    assert created.audience == [owner.id] and created.actor_id == owner.id

    changed = client.patch(
        f"{PATH}/{item.json['id']}",
        json={"name": "Renamed", "description": ""},
        headers=headers | {"If-Match": item.headers["ETag"]},
    )
    updated = outbox.one()
    assert updated.type == "task.updated" and updated.payload["changed"] == ["name"]

    same = client.patch(
        f"{PATH}/{item.json['id']}",
        json={"name": "Renamed"},
        headers=headers | {"If-Match": changed.headers["ETag"]},
    )
    assert same.status_code == 200 and outbox.new() == []  # nothing changed, nothing emitted

    client.delete(
        f"{PATH}/{item.json['id']}", headers=headers | {"If-Match": changed.headers["ETag"]}
    )
    assert outbox.one().type == "task.deleted"


def test_operators_list_and_delete_from_the_command_line(client, owner, headers, runner):
    item = client.post(PATH, json={"name": "Listed"}, headers=headers).json
    listed = runner.invoke(args=["tasks", "list"])
    assert listed.exit_code == 0, listed.output
    assert f"{item['id']}  {owner.id}  Listed" in listed.output

    deleted = runner.invoke(args=["tasks", "delete", item["id"]])
    assert deleted.exit_code == 0 and f"deleted {item['id']}" in deleted.output
    assert client.get(f"{PATH}/{item['id']}", headers=headers).status_code == 404
    missing = runner.invoke(args=["tasks", "delete", item["id"]])
    assert missing.exit_code == 1 and "no task" in missing.output
