"""``Cache-Control`` per operation: what a browser or a shared cache may keep of an answer.

The rules (``headers.cache_control`` applies them after every request; docs/http.md says
them to API users):

- ``no-store`` for what may carry a secret: every write (``POST``, ``PATCH``, ``DELETE``),
  every answer whose schema has a field marked :data:`~mars_server.http.security.SECRET`,
  everything under ``/oauth`` and ``/accounts``, and every error answered to a request with
  credentials.
- ``private, no-store`` for a successful read with credentials: personal data, written to
  no cache, a browser's disk included (a client keeping the body itself may still send
  its ``ETag`` in ``If-None-Match`` and get a ``304``). A request is credentialed when it
  has an ``Authorization`` header or a plugin's hook found its caller some other way.
- ``no-cache`` for an anonymous read of the API, unless its operation says more with
  :meth:`Blueprint.cache_control <mars_server.http.Blueprint.cache_control>`: a list of
  public resources may let any cache keep it for a few seconds
  (``public, max-age=N``, with ``Vary: Authorization``, so a caller with a token never
  gets the anonymous answer from a shared cache).
- What is the same for everyone (the OpenAPI document, the docs page) is
  ``public, max-age=N``, credentials or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import marshmallow as ma
from flask import g

from mars_server.http.security import SECRET

if TYPE_CHECKING:
    from collections.abc import Callable

F = TypeVar("F", bound="Callable[..., Any]")

NO_STORE = "no-store"
PRIVATE = "private, no-store"
REVALIDATE = "no-cache"
#: the longest ``public_max_age`` an operation may declare (seconds): public answers still
#: change, and a cache cannot be told to forget one.
MAX_PUBLIC_MAX_AGE = 3600


@dataclass(frozen=True)
class CachePolicy:
    """How the successful answers of one operation may be cached.

    :param public_max_age: anonymous answers are ``public, max-age=N``.
    :param no_store: nothing may keep any answer (``no-store``), whoever asks.
    :param everyone: the answer is the same whoever asks: ``public, max-age=N`` even to
        a request with credentials.
    """

    public_max_age: int | None = None
    no_store: bool = False
    everyone: bool = False

    def __post_init__(self) -> None:
        if self.public_max_age is not None and not 0 <= self.public_max_age <= MAX_PUBLIC_MAX_AGE:
            raise ValueError(f"public_max_age must be 0 to {MAX_PUBLIC_MAX_AGE} seconds")
        if self.everyone and self.public_max_age is None:
            raise ValueError("an answer the same for everyone needs public_max_age")

    @property
    def public(self) -> str | None:
        return None if self.public_max_age is None else f"public, max-age={self.public_max_age}"


SECRET_POLICY = CachePolicy(no_store=True)


def declare(policy: CachePolicy) -> None:
    """Apply ``policy`` to the current request's answer."""
    g.mars_cache_policy = policy


def take_declared() -> CachePolicy | None:
    """The policy the current request's operation declared, forgotten as it is read (the
    app context, and so ``g``, can outlive one request: in tests, in CLI commands)."""
    return g.pop("mars_cache_policy", None)


def with_policy(policy: CachePolicy) -> Callable[[F], F]:
    """Decorate a view: its answers follow ``policy``."""

    def decorator(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            declare(policy)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def carries_secret(schema: Any, _seen: frozenset[int] = frozenset()) -> bool:
    """Whether ``schema`` (a marshmallow schema or class) has a field marked as a secret,
    at any depth."""
    if isinstance(schema, type) and issubclass(schema, ma.Schema):
        schema = schema()
    if not isinstance(schema, ma.Schema) or id(schema) in _seen:
        return False
    seen = _seen | {id(schema)}
    for field in schema.fields.values():
        while isinstance(field, ma.fields.List):
            field = field.inner
        if field.metadata.get(SECRET):
            return True
        if isinstance(field, ma.fields.Nested) and carries_secret(field.schema, seen):
            return True
    return False
