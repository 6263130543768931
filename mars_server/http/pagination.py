"""Keyset pagination: ``?limit=&cursor=``, ``{"items", "next_cursor"}`` and ``Link: rel=next``.

A page is ``WHERE key > :last ORDER BY key LIMIT n + 1`` on an indexed, unique key, so its
cost does not grow with the table or with how deep the page is. Cursors are signed with
the app's secret and bound to the list and filters they came from: a tampered or foreign
cursor is a 400 problem.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlencode

import marshmallow as ma
from flask import current_app, g, request
from itsdangerous import BadSignature, URLSafeSerializer

from mars_server.db import db
from mars_server.http.fields import DigitsInteger
from mars_server.http.problems import BadRequest, ValidationFailed

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")
_SALT = "mars.cursor.v1"


class PageArgsSchema(ma.Schema):
    """``limit`` and ``cursor``; a list's own filters subclass this schema."""

    limit = DigitsInteger(
        validate=ma.validate.Range(min=1, max=200),
        metadata={"description": "Items per page (default 50, at most 200)."},
    )
    cursor = ma.fields.String(
        validate=ma.validate.Length(max=2048),
        metadata={"description": "`next_cursor` of the previous page; opaque."},
    )


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """A ``{"items": [...], "next_cursor": ...}`` schema named ``name`` in OpenAPI."""
    return type(
        name,
        (ma.Schema,),
        {
            "items": ma.fields.List(ma.fields.Nested(item_schema), required=True),
            "next_cursor": ma.fields.String(
                required=True,
                allow_none=True,
                metadata={"description": "Pass as `cursor` for the next page; null on the last."},
            ),
            "__doc__": f"A page of {item_schema.__name__.removesuffix('Schema')} items.",
        },
    )


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def _scope(name: str, filters: dict[str, Any]) -> str:
    """What a cursor is bound to: the list's name and its filters."""
    material = json.dumps([name, filters], sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _bad_cursor() -> None:
    raise BadRequest("The cursor is not valid for this list; start again without it.")


def paginate(
    stmt: Select[Any], key: InstrumentedAttribute[Any], args: dict[str, Any], *, name: str
) -> Page[Any]:
    """Run one page of ``stmt`` ordered by the unique ``key``; no request needed.

    :param args: the parsed :class:`PageArgsSchema` arguments plus the list's filters.
    :param name: names the list, so a cursor from another list is refused.
    """
    filters = {k: v for k, v in args.items() if k not in ("limit", "cursor")}
    scope = _scope(name, filters)
    limit = args.get("limit") or current_app.config["MARS"]["PAGE_SIZE_DEFAULT"]
    maximum = current_app.config["MARS"]["PAGE_SIZE_MAX"]
    if limit > maximum:
        raise ValidationFailed({"limit": f"Must be at most {maximum}."}, location="query")
    if args.get("cursor"):
        try:
            payload = _serializer().loads(args["cursor"])
        except BadSignature:
            _bad_cursor()
        if not isinstance(payload, list) or len(payload) != 2 or payload[0] != scope:
            _bad_cursor()
        stmt = stmt.where(key > payload[1])
    rows = list(db.session.scalars(stmt.order_by(key).limit(limit + 1)))
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = _serializer().dumps([scope, getattr(items[-1], key.key)])
    return Page(items, next_cursor)


def send_page(page: Page[T]) -> Page[T]:
    """In a view: send ``Link: rel="next"`` for ``page``, and return it."""
    if page.next_cursor:
        query = request.args.to_dict()
        query["cursor"] = page.next_cursor
        g.link_next = f"{request.base_url}?{urlencode(query)}"
    return page


def add_link_header(response: Any) -> Any:
    link = g.pop("link_next", None)
    if link:
        response.headers["Link"] = f'<{link}>; rel="next"'
    return response
