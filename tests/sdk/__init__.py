"""Helpers of the SDK tests (``tests/test_sdk_*.py``)."""

from __future__ import annotations

import re
from typing import Any

#: The password of the users the SDK tests make.
PASSWORD = "correct horse battery staple"


def operation_of(spec: dict[str, Any], method: str, path: str) -> str | None:
    """The operationId of the document's operation that ``method path`` calls."""
    best: tuple[int, str] | None = None
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        operation = item.get(method.lower())
        if operation and re.match(pattern, path):
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            if best is None or literal > best[0]:
                best = (literal, operation["operationId"])
    return best[1] if best else None
