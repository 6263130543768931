"""``mars_server.resources``: schemas derived from a resource's schema, and the create, update
and delete helpers (the projects plugin is written on them; its tests cover the API)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import marshmallow as ma
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mars_projects.models import Project, ProjectMember
from mars_server import resources
from mars_server.http import Conflict
from mars_server.testing import make_user


class ThingSchema(ma.Schema):
    id = ma.fields.String(dump_only=True, metadata={"example": "thg_1"})
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=5))
    colour = ma.fields.String(load_default="red", validate=ma.validate.OneOf(["red", "blue"]))
    secret = ma.fields.String(load_only=True)
    created_at = ma.fields.AwareDateTime(dump_only=True)

    @ma.validates("name")
    def _no_x(self, value: str, **kwargs: object) -> None:
        if "x" in value:
            raise ma.ValidationError("No x.")


def test_update_schema_loads_only_what_was_sent_and_validates_as_the_create_schema():
    update = resources.update_schema(ThingSchema)
    assert update.__name__ == "ThingUpdateSchema"
    assert update().load({}) == {}  # no required field, no default filled in
    assert update().load({"colour": "blue"}) == {"colour": "blue"}
    with pytest.raises(ma.ValidationError) as too_long:
        update().load({"name": "toolong"})
    assert too_long.value.messages == {"name": ["Length must be between 1 and 5."]}
    with pytest.raises(ma.ValidationError) as method:
        update().load({"name": "x"})  # the create schema's @validates method still runs
    assert method.value.messages == {"name": ["No x."]}
    # The create schema itself is untouched.
    assert ThingSchema().load({"name": "a"}) == {"name": "a", "colour": "red"}
    with pytest.raises(ma.ValidationError):
        ThingSchema().load({})


def test_event_schema_carries_every_response_field_and_the_events_own():
    event = resources.event_schema(
        ThingSchema, changed=ma.fields.List(ma.fields.String(), required=True)
    )
    assert event.__name__ == "ThingEventSchema"
    assert event.__doc__ == "A Thing, as events tell of it."
    fields = event._declared_fields
    assert list(fields) == ["id", "name", "colour", "created_at", "changed"]  # no load_only
    assert all(field.required and not field.dump_only for field in fields.values())
    assert fields["id"].metadata == {"example": "thg_1"}
    when = dt.datetime(2026, 12, 7, 1, 2, 3, tzinfo=dt.UTC)
    thing = SimpleNamespace(
        id="thg_1", name="a", colour="blue", secret="s", created_at=when, changed=["name"]
    )
    assert event().dump(thing) == {
        "id": "thg_1",
        "name": "a",
        "colour": "blue",
        "created_at": "2026-12-07T01:02:03+00:00",
        "changed": ["name"],
    }
    named = resources.event_schema(ThingSchema, name="ThingGoneEventSchema", doc="Gone.")
    assert (named.__name__, named.__doc__) == ("ThingGoneEventSchema", "Gone.")
    # The response schema itself is untouched.
    assert ThingSchema._declared_fields["id"].dump_only


def _project(slug: str) -> Project:
    return Project(slug=slug, name=slug.title(), description="", visibility="public")


def test_create_without_commit_leaves_the_transaction_to_the_caller(app, db, outbox):
    project = resources.create(_project("draft"), event="project.created", commit=False)
    assert outbox.new() == []  # nothing committed yet
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Project)) == 0
    assert outbox.new() == []

    resources.create(_project("kept"), event="project.created", commit=False)
    db.session.commit()
    [event] = outbox.new()
    assert event.type == "project.created" and event.payload["slug"] == "kept"
    assert event.audience is None and project.slug == "draft"


def test_a_unique_field_named_is_a_conflict_pointing_at_it(app, db):
    resources.create(_project("taken"), event="project.created")
    with pytest.raises(Conflict) as taken:
        resources.create(
            _project("taken"), event="project.created", unique={"slug": "{value!r} is taken."}
        )
    assert str(taken.value) == "'taken' is taken."
    assert taken.value.extra["errors"] == [
        {"detail": "Already taken.", "pointer": "/slug", "location": "json"}
    ]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Project)) == 1


def test_an_integrity_error_on_another_field_is_not_hidden(app, db):
    project = resources.create(_project("one"), event="project.created")
    owner = make_user(app)
    db.session.add(ProjectMember(project_id=project.id, user_id=owner.id, role="owner"))
    db.session.commit()
    duplicate = ProjectMember(project_id=project.id, user_id=owner.id, role="member")
    db.session.add(duplicate)
    with pytest.raises(IntegrityError):
        resources.update(
            project,
            {"name": "Renamed"},
            event="project.updated",
            unique={"slug": "{value!r} is taken."},
            extra={"member_ids": [owner.id]},
        )
