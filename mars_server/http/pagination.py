"""Lists: keyset pagination, and the conventions every list of MARS and its plugins shares.

- ``?limit=&cursor=``, answered ``{"items", "next_cursor"}`` with ``Link: rel="next"``.
- ``?sort=`` on the fields a list allows, ascending (``name``) or descending (``-name``).
- ``?fields=`` to choose the fields of the items (``id`` always comes).
- ``?q=`` for a text search, where a list offers one (:mod:`mars_server.search`).

A page is ``WHERE (sort, key) > (:last) ORDER BY sort, key LIMIT n + 1`` (``<`` and
``DESC`` for a descending sort) on an index, with the unique ``key`` to break ties, so its
cost does not grow with the table or with how deep the page is: never ``OFFSET``. Cursors
are signed with the app's secret and bound to the list, its filters, its sort and its search:
a tampered or foreign cursor is a 400 problem.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlencode

import marshmallow as ma
import sqlalchemy as sa
from flask import current_app, g, has_request_context, request
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.orm import aliased
from webargs.fields import DelimitedList

from mars_server.db import db
from mars_server.http.fields import DigitsInteger
from mars_server.http.problems import BadRequest, ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from sqlalchemy import ColumnElement, Select
    from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")
_SALT = "mars.cursor.v1"
#: The query parameters that only shape the answer: a cursor stays good across them.
_NOT_BOUND = ("limit", "cursor", "selected_fields")
SEARCH_MAX = 200


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


class FieldList(DelimitedList):
    """``?fields=id,name``: a comma-separated list of the item's fields (OpenAPI: an array,
    ``style: form``, ``explode: false``)."""


def fields_param(item_schema: type[ma.Schema]) -> FieldList:
    """The ``fields`` query parameter of a list of ``item_schema``: any of its fields.

    Declare it as ``selected_fields = fields_param(ItemSchema)`` (a schema's own ``fields``
    attribute is marshmallow's): it is read from ``?fields=``."""
    names = [f.data_key or name for name, f in item_schema().fields.items() if not f.load_only]
    return FieldList(
        ma.fields.String(validate=ma.validate.OneOf(names)),
        validate=ma.validate.Length(min=1, max=len(names)),
        data_key="fields",
        metadata={
            "description": "Only these fields of each item, comma-separated (`id` always "
            "comes): e.g. `" + ",".join(names[:2]) + "`.",
        },
    )


def sort_param(*names: str, default: str) -> ma.fields.String:
    """The ``sort`` query parameter: one of ``names``, ascending, or descending with ``-``."""
    choices = [*names, *(f"-{name}" for name in names)]
    if default not in choices:
        raise ValueError(f"default sort {default!r} is not among {choices}")
    return ma.fields.String(
        validate=ma.validate.OneOf(choices),
        metadata={
            "description": f"The order: a field, `-` before it for descending (default "
            f"`{default}`). Cursors are bound to it.",
            "default": default,
        },
    )


def search_param(what: str) -> ma.fields.String:
    """The ``q`` query parameter: words to look for in ``what`` (every word must match)."""
    return ma.fields.String(
        validate=ma.validate.Length(min=1, max=SEARCH_MAX),
        metadata={
            "description": f"Words to look for in {what}; every word must match, "
            '`"a phrase"` matches as one.',
        },
    )


#: What a cursor can carry of a sort column (a datetime as ISO 8601).
_CURSOR_TYPES = (str, int, dt.datetime)


@dataclass(frozen=True)
class Sort:
    """What a list may be sorted on: each name's column, and the order without ``?sort``.

    Each column must be ``NOT NULL`` (a keyset cannot step over NULLs, which the two
    databases order differently) and hold text, integers or datetimes, which cursors carry.
    """

    columns: Mapping[str, InstrumentedAttribute[Any]]
    default: str

    def __post_init__(self) -> None:
        for name, attribute in self.columns.items():
            column = attribute.property.columns[0]
            if column.nullable:
                raise ValueError(f"sort {name!r}: its column may be NULL; sort on NOT NULL ones")
            kind = getattr(column.type, "impl_instance", column.type)  # a TypeDecorator's own
            python_type = kind.python_type
            if not issubclass(python_type, _CURSOR_TYPES) or python_type is bool:
                raise ValueError(f"sort {name!r}: a cursor cannot carry {python_type.__name__}")


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def _scope(name: str, filters: dict[str, Any]) -> str:
    """What a cursor is bound to: the list's name, its filters, its sort and its search."""
    material = json.dumps([name, filters], sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _bad_cursor() -> None:
    raise BadRequest("The cursor is not valid for this list; start again without it.")


def _unique(attribute: InstrumentedAttribute[Any]) -> bool:
    column = attribute.property.columns[0]
    return bool(column.unique or column.primary_key)


def _to_json(value: Any) -> Any:
    return {"t": value.isoformat()} if isinstance(value, dt.datetime) else value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"t"}:
        try:
            return dt.datetime.fromisoformat(value["t"])
        except (TypeError, ValueError):
            _bad_cursor()
    if isinstance(value, dict | list):
        _bad_cursor()
    return value


def paginate(
    stmt: Select[Any],
    key: InstrumentedAttribute[Any],
    args: dict[str, Any],
    *,
    name: str,
    sort: Sort | None = None,
    search: Callable[[str], ColumnElement[bool]] | None = None,
) -> Page[Any]:
    """Run one page of ``stmt``; no request needed.

    :param key: the unique column that orders ties (and the list, without ``sort``).
    :param args: the parsed :class:`PageArgsSchema` arguments plus the list's filters, and
        ``sort`` and ``q`` where the list offers them.
    :param name: names the list, so a cursor from another list is refused.
    :param sort: the columns ``args["sort"]`` may name, and the default order (``"-id"``:
        the key, descending). Without it, the list is in ascending ``key`` order.
    :param search: makes the condition that rows match ``args["q"]``
        (:func:`mars_server.search.matches`).
    """
    filters = {k: v for k, v in args.items() if k not in _NOT_BOUND}
    order = args.get("sort") or (sort.default if sort else key.key)
    descending = order.startswith("-")
    column = key
    if order.lstrip("-") != key.key:
        if sort is None or order.lstrip("-") not in sort.columns:
            raise ValidationFailed({"sort": f"Cannot sort on {order!r}."}, location="query")
        column = sort.columns[order.lstrip("-")]
    filters["sort"] = order
    if args.get("q"):
        if search is None:
            raise ValidationFailed({"q": "This list has no search."}, location="query")
        stmt = stmt.where(search(args["q"]))
    scope = _scope(name, filters)
    limit = _limit(args)
    # A unique sort column orders alone; any other is followed by the key.
    columns = [column] if column is key or _unique(column) else [column, key]
    if args.get("cursor"):
        try:
            payload = _serializer().loads(args["cursor"])
        except BadSignature:
            _bad_cursor()
        if not isinstance(payload, list) or len(payload) != 1 + len(columns):
            _bad_cursor()
        if payload[0] != scope:
            _bad_cursor()
        last = [_from_json(value) for value in payload[1:]]
        here = sa.tuple_(*columns) if len(columns) > 1 else columns[0]
        there = sa.tuple_(*last) if len(columns) > 1 else last[0]
        stmt = stmt.where(here < there if descending else here > there)
    ordering = [c.desc() if descending else c.asc() for c in columns]
    rows = list(db.session.scalars(stmt.order_by(*ordering).limit(limit + 1)))
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        values = [_to_json(getattr(items[-1], c.key)) for c in columns]
        next_cursor = _serializer().dumps([scope, *values])
    return Page(items, next_cursor)


def _limit(args: dict[str, Any]) -> int:
    limit: int = args.get("limit") or current_app.config["MARS"]["PAGE_SIZE_DEFAULT"]
    maximum = current_app.config["MARS"]["PAGE_SIZE_MAX"]
    if limit > maximum:
        raise ValidationFailed({"limit": f"Must be at most {maximum}."}, location="query")
    return limit


def first_pages(
    stmt: Select[Any],
    key: InstrumentedAttribute[Any],
    args: dict[str, Any],
    *,
    group: InstrumentedAttribute[Any],
    groups: Sequence[Any],
    name: Callable[[Any], str],
) -> dict[Any, Page[Any]]:
    """The first page of many lists in one query: for each value ``g`` of ``groups``, what
    ``paginate(stmt.where(group == g), key, args, name=name(g))`` answers (its items and
    its ``next_cursor``, with which ``paginate`` goes on), all at once. For a list of lists
    (GraphQL: each item's own page of something), where a query per item would not do.

    The lists are in ascending ``key`` order (``args`` has no ``sort`` but the key's, and no
    ``cursor``); a window function numbers each list's rows.
    """
    if args.get("cursor") or args.get("sort", key.key) != key.key:
        raise ValueError("first_pages: the first pages, in key order: no cursor, no sort")
    filters = {k: v for k, v in args.items() if k not in _NOT_BOUND}
    filters["sort"] = key.key
    limit = _limit(args)
    pages: dict[Any, Page[Any]] = {g: Page([], None) for g in groups}
    if not groups:
        return pages
    entity = stmt.column_descriptions[0]["entity"]
    rank = sa.func.row_number().over(partition_by=group, order_by=key.asc()).label("mars_rank")
    numbered = stmt.where(group.in_(list(groups))).add_columns(rank).subquery()
    rows = aliased(entity, numbered)
    found = db.session.scalars(
        sa.select(rows)
        .where(numbered.c.mars_rank <= limit + 1)
        .order_by(getattr(rows, group.key), getattr(rows, key.key))
    )
    for item in found:
        value = getattr(item, group.key)
        page = pages[value]
        if len(page.items) < limit:
            page.items.append(item)
        else:  # one more than a page: the list goes on after the page's last item
            last = _to_json(getattr(page.items[-1], key.key))
            page.next_cursor = _serializer().dumps([_scope(name(value), filters), last])
    return pages


def send_page(page: Page[T]) -> Page[T]:
    """In a view: send ``Link: rel="next"`` for ``page``, and return it."""
    if page.next_cursor:
        query = request.args.to_dict()
        query["cursor"] = page.next_cursor
        g.link_next = f"{request.base_url}?{urlencode(query)}"
    return page


def chosen_fields() -> set[str] | None:
    """The item fields ``?fields=`` chose for this request's answer (with ``id``), or None.

    Read from the query string the list's argument schema validated (the parameter is
    offered only by lists that declare :func:`fields_param`)."""
    if not has_request_context() or "fields" not in request.args:
        return None
    return {name.strip() for name in request.args["fields"].split(",")} | {"id"}


def select_fields(page: Any) -> Any:
    """A dumped page with only the chosen fields in its items (see :func:`chosen_fields`)."""
    chosen = chosen_fields()
    if chosen is None or not isinstance(page, dict) or not isinstance(page.get("items"), list):
        return page
    page["items"] = [{k: v for k, v in item.items() if k in chosen} for item in page["items"]]
    return page


def add_link_header(response: Any) -> Any:
    """``Link: <...>; rel="next"``, beside any link already there (a deprecation's)."""
    link = g.pop("link_next", None)
    if link:
        value = f'<{link}>; rel="next"'
        existing = response.headers.get("Link")
        response.headers["Link"] = f"{value}, {existing}" if existing else value
    return response
