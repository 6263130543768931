"""JSON Schema (as OpenAPI 3.1 writes it) to Python annotations and converters.

A :class:`PyType` is what a schema becomes in the SDK: the annotation a reader sees, and
the expression that turns a decoded JSON value into it (``None`` when the value is used as
it comes, which is what keeps reading a large page fast).
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["response", "request"]
REF_PREFIX = "#/components/schemas/"


class GeneratorError(Exception):
    """The OpenAPI document has something the generator cannot turn into good Python."""


@dataclass(frozen=True)
class PyType:
    """A schema as Python: ``annotation``, and ``convert(expr)`` -> expression (or None)."""

    annotation: str
    converter: str | None = None  # a format string with one ``{}``: the JSON value
    nullable: bool = False
    refs: frozenset[str] = field(default_factory=frozenset)
    stdlib: frozenset[str] = field(default_factory=frozenset)  # "datetime", "date", "Any"...

    def convert(self, expr: str) -> str:
        return self.converter.format(expr) if self.converter else expr


def ref_name(ref: str) -> str:
    if not ref.startswith(REF_PREFIX):
        raise GeneratorError(f"unsupported $ref {ref!r}: only {REF_PREFIX}... is")
    return ref[len(REF_PREFIX) :]


def identifier(name: str) -> str:
    """A Python name for a JSON key or parameter: snake_case, never a keyword."""
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    name = re.sub(r"\W+", "_", name).strip("_").lower() or "value"
    if name[0].isdigit():
        name = "_" + name
    return name + "_" if keyword.iskeyword(name) else name


def class_name(name: str) -> str:
    """``project-members`` -> ``ProjectMembers``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", name))


def _types_of(schema: dict[str, Any]) -> tuple[list[str], bool]:
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    nullable = "null" in kinds or schema.get("nullable") is True
    return [k for k in kinds if k != "null"], nullable


def _single_ref(schema: dict[str, Any]) -> str | None:
    if "$ref" in schema:
        return str(schema["$ref"])
    parts = schema.get("allOf") or schema.get("anyOf") or schema.get("oneOf")
    refs = [p["$ref"] for p in parts or () if "$ref" in p]
    others = [p for p in parts or () if "$ref" not in p and p.get("type") != "null"]
    return refs[0] if len(refs) == 1 and not others else None


def _nullable_in_union(schema: dict[str, Any]) -> bool:
    parts = schema.get("anyOf") or schema.get("oneOf") or ()
    return any(p.get("type") == "null" for p in parts)


def py_type(schema: dict[str, Any], direction: Direction) -> PyType:
    """The Python type of ``schema`` when MARS sends it (``response``) or receives it."""
    base = _base_type(schema, direction)
    if not base.nullable:
        return base
    converter = None
    if base.converter:
        converter = "None if (v := {}) is None else " + base.convert("v")
    return PyType(f"{base.annotation} | None", converter, True, base.refs, base.stdlib)


def _base_type(schema: dict[str, Any], direction: Direction) -> PyType:
    ref = _single_ref(schema)
    if ref is not None:
        name = ref_name(ref)
        nullable = _nullable_in_union(schema) or schema.get("nullable") is True
        if direction == "request":
            return PyType("Mapping[str, Any]", None, nullable, stdlib=frozenset({"Any", "Mapping"}))
        return PyType(name, f"{name}.from_json({{}})", nullable, frozenset({name}))
    parts = [p for p in schema.get("anyOf") or schema.get("oneOf") or () if p.get("type") != "null"]
    if len(parts) == 1 and _nullable_in_union(schema):  # ``anyOf: [an enum, null]``
        one = _base_type(parts[0], direction)
        return PyType(one.annotation, one.converter, True, one.refs, one.stdlib)
    kinds, nullable = _types_of(schema)
    if "enum" in schema:
        values = [v for v in schema["enum"] if v is not None]
        literal = ", ".join(repr(v).replace("'", '"') for v in values)
        return PyType(f"Literal[{literal}]", None, nullable, stdlib=frozenset({"Literal"}))
    if len(kinds) != 1:
        return PyType("Any", None, False, stdlib=frozenset({"Any"}))
    kind = kinds[0]
    if kind == "string":
        fmt = schema.get("format")
        if fmt in ("date-time", "date"):
            py = "datetime" if fmt == "date-time" else "date"
            return PyType(py, f"{py}.fromisoformat({{}})", nullable, stdlib=frozenset({py}))
        return PyType("str", None, nullable)
    if kind in ("integer", "number", "boolean"):
        py = {"integer": "int", "number": "float", "boolean": "bool"}[kind]
        return PyType(py, None, nullable)
    if kind == "array":
        item = py_type(schema.get("items") or {}, direction)
        container = "Sequence" if direction == "request" else "list"
        converter = "[" + item.convert("i") + " for i in {}]" if item.converter else None
        extra = frozenset({"Sequence"} if direction == "request" else ())
        return PyType(
            f"{container}[{item.annotation}]", converter, nullable, item.refs, item.stdlib | extra
        )
    if kind == "object":
        extra_values = schema.get("additionalProperties")
        value = None
        if isinstance(extra_values, dict) and extra_values:
            value = py_type(extra_values, direction)
        plain = value is not None and not value.converter and not value.refs
        annotation = value.annotation if value is not None and plain else "Any"
        container = "Mapping" if direction == "request" else "dict"
        names = {container} | (set(value.stdlib) if value is not None and plain else {"Any"})
        return PyType(f"{container}[str, {annotation}]", None, nullable, stdlib=frozenset(names))
    return PyType("Any", None, nullable, stdlib=frozenset({"Any"}))
