"""``mars sdk generate``: the Python SDK (``mars_sdk``) from MARS's OpenAPI document.

The hand-written runtime of ``mars_sdk`` (client, auth, retries, errors, pagination,
webhooks) stays as it is; the generator writes the modules that follow from the document:
``models/`` (one dataclass per schema a response or an event carries), ``resources/`` (one
class per tag, one method per operation), ``client.py`` (``MarsClient``, one attribute per
resource) and ``events.py`` (the webhook payloads).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mars_server.sdkgen.document import read_document
from mars_server.sdkgen.render import GENERATED, format_sources, render
from mars_server.sdkgen.types import GeneratorError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["GENERATED", "GeneratorError", "generate", "generated_files"]
GENERATED_FOLDERS = ("models", "resources")


def generated_files(package: Path) -> list[Path]:
    """The files of ``package`` the generator wrote (they say so on their first lines)."""
    candidates = [package / "client.py", package / "events.py"]
    for folder in GENERATED_FOLDERS:
        candidates += sorted((package / folder).glob("*.py"))
    return [
        path
        for path in candidates
        if path.is_file() and GENERATED in path.read_text(encoding="utf-8")[:400]
    ]


def generate(spec: dict[str, Any], package: Path) -> list[Path]:
    """Write the generated modules for ``spec`` into the ``mars_sdk`` folder ``package``.

    Generated files no longer wanted (a tag or plugin gone) are removed; nothing else in
    ``package`` is touched. Returns the files written.
    """
    sources = render(read_document(spec))
    for stale in generated_files(package):
        if stale.relative_to(package).as_posix() not in sources:
            stale.unlink()
    written = []
    for relative, text in sorted(sources.items()):
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    format_sources(written)
    return written
