"""The helpers resolvers use; re-exported by :mod:`mars_server.graphql`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import marshmallow as ma
from flask import current_app

from mars_server.http.problems import PreconditionFailed, ValidationFailed
from mars_server.http.ratelimit import count_operation
from mars_server.http.security import admit

if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo

    from mars_server.http.pagination import Page

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R", bound=Callable[..., Any])


class Batch(Generic[K, V]):
    """Values loaded by key, many keys in one query.

    A list's resolver says which keys its items will ask for (:meth:`expect`); the first
    :meth:`load` of any of them fetches them all at once, and the others are answered from
    what that fetched. A key never expected is fetched with whatever is still pending.
    """

    def __init__(self, fetch: Callable[[list[K]], Mapping[K, V]], missing: Callable[[], V]):
        self._fetch = fetch
        self._missing = missing
        self._pending: dict[K, None] = {}  # ordered, unique
        self._loaded: dict[K, V] = {}

    def expect(self, keys: Iterable[K]) -> None:
        """Keys the next :meth:`load` fetches with its own."""
        self._pending.update((key, None) for key in keys if key not in self._loaded)

    def load(self, key: K) -> V:
        if key not in self._loaded:
            self._pending.pop(key, None)
            keys = [key, *self._pending]
            self._pending.clear()
            found = self._fetch(keys)
            for wanted in keys:
                self._loaded[wanted] = found[wanted] if wanted in found else self._missing()
        return self._loaded[key]


@dataclass
class GraphQLContext:
    """``info.context`` of every resolver: what lives as long as one GraphQL request."""

    batches: dict[str, Batch[Any, Any]] = field(default_factory=dict)
    #: What lists have listed, by a name of the list's choosing: the keys its items' fields
    #: batch (:meth:`Batch.expect`) when they take arguments the list cannot know.
    listed: dict[str, list[Any]] = field(default_factory=dict)


def batch(
    info: GraphQLResolveInfo,
    name: str,
    fetch: Callable[[list[K]], Mapping[K, V]],
    missing: Callable[[], V] = lambda: None,  # type: ignore[assignment,return-value]
) -> Batch[K, V]:
    """The request's :class:`Batch` called ``name`` (made on first use).

    :param fetch: given keys, returns what it found for each (by key); one query.
    :param missing: the value of a key ``fetch`` did not return (``list`` for lists).
    """
    batches = info.context.batches
    if name not in batches:
        batches[name] = Batch(fetch, missing)
    return batches[name]


def requires(
    *scopes: str, permission: str | None = None, optional: bool = False
) -> Callable[[R], R]:
    """Let a resolver run only for callers whose token has ``scopes`` (and ``permission``).

    The same check as ``Blueprint.requires``: no token is an ``authentication-required``
    error, a token without a scope ``insufficient-scope``; ``optional=True`` lets anonymous
    callers in (the service decides what they see), while a token sent must still carry
    the scopes.
    """

    def decorator(resolver: R) -> R:
        @wraps(resolver)
        def checked(*args: Any, **kwargs: Any) -> Any:
            admit(scopes, permission, optional=optional)
            return resolver(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorator


def rate_limited(operation_id: str) -> Callable[[R], R]:
    """Count each call of a mutation against the rate limit of the REST operation it
    mirrors (``Blueprint.rate_limit`` on ``operation_id``): twenty aliased calls in one
    document cost twenty calls, and a call past the quota is a ``rate-limited`` error."""

    def decorator(resolver: R) -> R:
        @wraps(resolver)
        def counted(*args: Any, **kwargs: Any) -> Any:
            count_operation(operation_id)
            return resolver(*args, **kwargs)

        return counted  # type: ignore[return-value]

    return decorator


def page_args(first: int | None, after: str | None, **filters: Any) -> dict[str, Any]:
    """``first``, ``after`` and a connection's filters as :func:`~mars_server.http.paginate`'s
    ``args``; a ``first`` out of range is a validation error naming ``first``."""
    maximum = current_app.config["MARS"]["PAGE_SIZE_MAX"]
    if first is not None and not 1 <= first <= maximum:
        raise ValidationFailed({"first": f"Must be from 1 to {maximum}."}, location="arguments")
    args = {name: value for name, value in filters.items() if value is not None}
    if first is not None:
        args["limit"] = first
    if after is not None:
        args["cursor"] = after
    return args


def connection(page: Page[Any]) -> dict[str, Any]:
    """A connection (``nodes`` and ``pageInfo``) answering ``page``; fields are read in
    snake case (the schema's names are converted)."""
    return {
        "nodes": page.items,
        "page_info": {
            "has_next_page": page.next_cursor is not None,
            "end_cursor": page.next_cursor,
        },
    }


def load_input(schema: ma.Schema, data: Mapping[str, Any], *, partial: bool = False) -> Any:
    """``data`` (a mutation's input) loaded by the REST operation's marshmallow ``schema``:
    the same rules, and a validation error listing every field that breaks one."""
    try:
        return schema.load(dict(data), partial=partial)
    except ma.ValidationError as exc:
        messages = exc.normalized_messages()
        raise ValidationFailed(
            {name: _flat(problems) for name, problems in messages.items()}, location="input"
        ) from None


def _flat(problems: Any) -> list[str]:
    if isinstance(problems, dict):
        return [text for inner in problems.values() for text in _flat(inner)]
    if isinstance(problems, list):
        return [str(text) for text in problems]
    return [str(problems)]


def require_version(obj: Any, version: int) -> None:
    """``If-Match`` for a mutation: refuse to change ``obj`` unless ``version`` (its
    ``version`` field, as the client last read it) is current."""
    if obj.version != version:
        raise PreconditionFailed(
            f"The resource changed since you read it (version {version}, now {obj.version}); "
            "fetch it again and retry."
        )
