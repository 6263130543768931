"""Small types the generated code shares: :data:`UNSET` and :class:`HasETag`."""

from __future__ import annotations

import enum
from typing import Final, Literal, Protocol


class Unset(enum.Enum):
    """The type of :data:`UNSET`: a field the server did not send, an argument not given.

    ``None`` is a value (JSON ``null``); ``UNSET`` is its absence. It is falsy.
    """

    UNSET = "UNSET"

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "UNSET"


#: An optional field the server left out, or an argument the caller did not give.
UNSET: Final = Unset.UNSET


class HasETag(Protocol):
    """Anything with an ``etag``: the models of resources MARS sends an ``ETag`` for."""

    @property
    def etag(self) -> str | None: ...
