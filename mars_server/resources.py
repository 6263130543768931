"""Helpers for the typical resource of a plugin: derived schemas and the change that emits.

A resource is a model, a response schema, and create, update and delete services that each
emit an event and commit. These helpers write the parts that are the same every time, and
nothing else: a plugin still writes its own rules (who may do what) and may write any part
by hand instead (docs/plugins.md, "A typical resource").

- :func:`update_schema`: the PATCH body, from the create schema (every field optional, no
  defaults, the same validation).
- :func:`event_schema`: an event's payload, from the response schema (every field always
  present), plus fields of the event's own.
- :func:`create`, :func:`update` and :func:`delete`: change the object, emit its event in the
  same transaction, commit; a unique constraint the change breaks is a 409 naming the field.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import marshmallow as ma
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mars_server.db import db
from mars_server.events import emit
from mars_server.http.problems import Conflict
from mars_server.state import mars_state

T = TypeVar("T")
#: Who may see the object an event is about: user ids, ``None`` for everyone, or a function
#: that says so once the change is made (e.g. after a visibility change).
Audience = Iterable[str] | None | Callable[[], Iterable[str] | None]

__all__ = ["Audience", "create", "delete", "event_schema", "update", "update_schema"]


def _schema_name(schema: type[ma.Schema], suffix: str) -> str:
    return f"{schema.__name__.removesuffix('Schema')}{suffix}Schema"


def update_schema(schema: type[ma.Schema], *, name: str | None = None) -> type[ma.Schema]:
    """The PATCH schema of a resource whose create (POST) schema is ``schema``.

    Every field is optional and has no default, so the loaded data holds exactly the fields
    sent; validators (on fields and ``@validates`` methods) are the same. OpenAPI names it
    ``<Thing>Update``. Use it as ``@blp.arguments(ThingUpdateSchema)``.
    """
    overrides: dict[str, Any] = {}
    for field_name, field in schema._declared_fields.items():
        if field.required or field.load_default is not ma.missing:
            optional = copy.copy(field)
            optional.required = False
            optional.load_default = ma.missing
            overrides[field_name] = optional
    doc = f"Changes to a {schema.__name__.removesuffix('Schema')}: send only the fields to change."
    return type(name or _schema_name(schema, "Update"), (schema,), {**overrides, "__doc__": doc})


def event_schema(
    schema: type[ma.Schema],
    *,
    name: str | None = None,
    doc: str | None = None,
    **fields: ma.fields.Field,
) -> type[ma.Schema]:
    """An event payload schema: the fields of the response ``schema``, each always present
    (``required`` in the webhooks' OpenAPI), then ``fields`` of the event's own.

    ``emit`` dumps a payload with it, so what the response schema does not show, the event
    does not carry either. OpenAPI names it ``<Thing>Event`` unless ``name`` is given.
    """
    copied: dict[str, ma.fields.Field] = {}
    for field_name, field in schema._declared_fields.items():
        if field.load_only:
            continue  # never in a response: never in an event
        always = copy.copy(field)
        always.required = True
        always.dump_only = False
        always.load_default = ma.missing
        copied[field_name] = always
    generated = ma.Schema.from_dict(
        {**copied, **fields}, name=name or _schema_name(schema, "Event")
    )
    generated.__doc__ = doc or f"A {schema.__name__.removesuffix('Schema')}, as events tell of it."
    return generated


def _payload(obj: Any, event: str, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    schema = mars_state().event_types[event].payload
    payload = {
        name: getattr(obj, field.attribute or name)
        for name, field in schema._declared_fields.items()
        if hasattr(obj, field.attribute or name)
    }
    return payload | dict(extra or {})


def _emit(
    obj: Any,
    event: str,
    audience: Audience,
    extra: Mapping[str, Any] | None,
) -> None:
    who = audience() if callable(audience) else audience
    emit(event, _payload(obj, event, extra), audience=who)


def _flush(obj: Any, unique: Mapping[str, str] | None) -> None:
    """Flush; a broken unique constraint on a field of ``unique`` is a 409 naming it."""
    values = {field: getattr(obj, field, None) for field in unique or {}}
    try:
        db.session.flush()
    except IntegrityError as error:
        db.session.rollback()
        message = str(error.orig)
        for field, template in (unique or {}).items():
            if field in message:
                raise Conflict(
                    template.format(value=values[field]),
                    errors=[
                        {"detail": "Already taken.", "pointer": f"/{field}", "location": "json"}
                    ],
                ) from None
        raise


def create(
    obj: T,
    *,
    event: str,
    audience: Audience = None,
    unique: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    commit: bool = True,
) -> T:
    """Add ``obj``, emit ``event`` about it, commit; return it.

    :param event: a declared event type; its payload is ``obj`` as the type's schema dumps
        it, with ``extra`` on top.
    :param audience: who may see ``obj`` (see :data:`Audience`); ``None``: everyone.
    :param unique: ``{"slug": "The slug {value!r} is taken."}``: a unique constraint on one
        of these fields is a 409 problem pointing at the field, with this message.
    :param commit: ``False`` to leave the commit to the caller's unit of work.
    """
    db.session.add(obj)
    _flush(obj, unique)
    _emit(obj, event, audience, extra)
    if commit:
        db.session.commit()
    return obj


def update(
    obj: Any,
    changes: Mapping[str, Any],
    *,
    event: str,
    audience: Audience = None,
    unique: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    commit: bool = True,
) -> list[str]:
    """Set ``changes`` on ``obj``; when a value really changed, emit ``event`` and commit.

    The payload is ``obj`` after the change plus ``changed``, the names of the fields whose
    value changed (declare it in the event's schema, e.g. with :func:`event_schema`), and
    ``extra``. The same values again change nothing, emit nothing, and return ``[]``.
    Parameters as for :func:`create`.
    """
    for name, value in changes.items():
        setattr(obj, name, value)
    state = sa.inspect(obj)
    changed = [name for name in changes if state.attrs[name].history.has_changes()]
    if not changed:
        return []
    _flush(obj, unique)
    _emit(obj, event, audience, {"changed": changed, **(extra or {})})
    if commit:
        db.session.commit()
    return changed


def delete(
    obj: Any,
    *,
    event: str,
    audience: Audience = None,
    extra: Mapping[str, Any] | None = None,
    commit: bool = True,
) -> None:
    """Emit ``event`` with ``obj`` as it is, then delete it and commit.

    The audience is read before the deletion, so those who could see ``obj`` hear of it.
    """
    _emit(obj, event, audience, extra)
    db.session.delete(obj)
    if commit:
        db.session.commit()
