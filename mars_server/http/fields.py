"""Marshmallow fields that take only what the OpenAPI document says, for request schemas.

marshmallow is generous where a documented API must not be: ``Integer`` takes ``"5"`` and
``5.0``, and in a query string ``+5``, `` 5`` or another script's digits; ``Boolean`` takes
``1``, ``"yes"`` and ``"on"``. A client that sends those relies on something the document
does not promise. (``Integer(strict=True)`` is the body's answer for integers.)
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma


class DigitsInteger(ma.fields.Integer):
    """An integer written in ASCII digits only, for query strings: ``int()`` also takes
    ``+5``, `` 5 ``, ``1_0`` and other scripts' digits (``\u0665``, Arabic-Indic five)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, str) and not (value.isascii() and value.isdigit()):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(ma.fields.Boolean):
    """``true`` or ``false`` in a JSON body, and nothing else (not ``1``, ``"yes"``)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class QueryBoolean(ma.fields.Boolean):
    """``true`` or ``false`` in a query string, and nothing else (not ``1``, ``on``)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value not in ("true", "false"):
            raise self.make_error("invalid", input=value)
        return value == "true"
