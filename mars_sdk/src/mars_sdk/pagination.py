"""Lists: pages of items joined by ``next_cursor``, iterated as one stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from mars_sdk.errors import UnexpectedResponse

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; ``next_cursor`` is ``None`` on the last."""

    items: list[T]
    next_cursor: str | None


class PageIterator(Generic[T]):
    """The items of a list, page after page: the next page is fetched when one runs out.

    The first page is fetched by the call that made this iterator (so its errors are raised
    there); :meth:`pages` walks the pages instead of the items.
    """

    def __init__(self, first_page: Page[T], fetch: Callable[[str], Page[T]]) -> None:
        self.first_page = first_page
        self._fetch = fetch
        self._items = self._walk()

    def pages(self) -> Iterator[Page[T]]:
        """Every page from the first, fetching each after the one before."""
        page = self.first_page
        yield page
        seen: set[str] = set()
        while page.next_cursor is not None:
            if page.next_cursor in seen:  # a server bug must not loop for ever
                raise UnexpectedResponse("the list gave a cursor it gave before")
            seen.add(page.next_cursor)
            page = self._fetch(page.next_cursor)
            yield page

    def _walk(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.items

    def __iter__(self) -> PageIterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._items)
