"""The base of the generated resource classes (``client.projects``, ``client.me``, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mars_sdk._client import BaseClient


class Resource:
    """The operations of one area of the API, sent through ``client``."""

    def __init__(self, client: BaseClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client.base_url}>"
