"""Where an operation lives in the SDK, and what its method is called.

One rule, for the core and every plugin alike (docs/plugins.md#how-operations-are-named):

1. The client's attribute is the operation's tag: ``client.projects``.
2. A literal path segment that some path of the document follows with a parameter is a
   collection (``/projects/{project_id}/members/{user_id}``: ``projects``, ``members``). The
   collections of an operation's path that come after its tag's own are its sub-resources:
   ``client.projects.members``. A sub-resource's name loses a leading word that names the tag
   (``notification-preferences`` under ``notifications``: ``client.notifications.preferences``).
3. The method is the ``operationId`` without the words that name the tag or a sub-resource,
   singular or plural, and without ``my`` and ``me`` (an SDK client always acts as its
   caller): ``list_project_members`` is ``client.projects.members.list``,
   ``rotate_app_secret`` is ``client.apps.rotate_secret``, ``get_me`` is ``client.me.get``.
4. ``x-mars-sdk-method`` on an operation (``@blp.doc(**{"x-mars-sdk-method": "..."})``) names
   the method instead, where the rule gives a poor name.
5. Two operations of one resource with one name, or a method named like a sub-resource, stop
   the generator.
"""

from __future__ import annotations

import itertools
import keyword
from typing import TYPE_CHECKING, Any

from mars_server.sdkgen.types import GeneratorError, identifier

if TYPE_CHECKING:
    from collections.abc import Iterable

#: The words no method keeps: every call is made as the client's own caller.
CALLER_WORDS = frozenset({"my", "me"})
OVERRIDE = "x-mars-sdk-method"


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s][2:]  # without "api" and "v1"


def _is_parameter(segment: str) -> bool:
    return segment.startswith("{")


def collections(paths: Iterable[str]) -> set[str]:
    """The literal segments that some path follows with a parameter."""
    found = set()
    for path in paths:
        segments = _segments(path)
        for here, after in itertools.pairwise(segments):
            if not _is_parameter(here) and _is_parameter(after):
                found.add(here)
    return found


def _words(name: str) -> list[str]:
    """``deleteThing``, ``delete_thing``, ``delete-thing``: ``["delete", "thing"]``."""
    return [w for w in identifier(name).split("_") if w]


def _forms(word: str) -> set[str]:
    """``word`` in the singular and the plural (English, as API nouns go)."""
    forms = {word}
    if word.endswith("ies"):
        forms.add(word[:-3] + "y")
    elif word.endswith("s"):
        forms.add(word[:-1])
    forms.add(word[:-1] + "ies" if word.endswith("y") else word + "s")
    return forms


def chain(tag: str, path: str, known: set[str]) -> tuple[str, ...]:
    """The sub-resources (Python names) of the operation at ``path`` under ``tag``."""
    found = [s for s in _segments(path) if s in known]
    if tag in found:
        found = found[found.index(tag) + 1 :]
    tag_words = {form for word in _words(tag) for form in _forms(word)}
    names = []
    for segment in found:
        words = _words(segment)
        while len(words) > 1 and words[0] in tag_words:
            words = words[1:]
        names.append(identifier("_".join(words)))
    return tuple(names)


def method_name(operation: dict[str, Any], tag: str, sub_resources: tuple[str, ...]) -> str:
    """The operation's method, by the rule above (or its ``x-mars-sdk-method``)."""
    chosen = operation.get(OVERRIDE)
    if chosen:
        name = str(chosen)
        if not name.isidentifier() or keyword.iskeyword(name) or name != name.lower():
            raise GeneratorError(f"{OVERRIDE} {name!r} is not a snake_case Python name")
        return name
    nouns = {form for part in (tag, *sub_resources) for w in _words(part) for form in _forms(w)}
    words = _words(operation["operationId"])
    kept = [w for w in words if w not in nouns and w not in CALLER_WORDS]
    return identifier("_".join(kept or words))
