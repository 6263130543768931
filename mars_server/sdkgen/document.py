"""Read an OpenAPI 3.1 document into what the templates render: models and operations."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from mars_server.sdkgen import naming
from mars_server.sdkgen.types import (
    GeneratorError,
    PyType,
    identifier,
    py_type,
    ref_name,
)

METHODS = ("get", "put", "post", "patch", "delete")
#: Header parameters the runtime handles itself, and the keyword that stands for them.
SPECIAL_HEADERS = {
    "idempotency-key": "idempotency_key",
    "if-match": "if_match",
    "if-none-match": "if_none_match",
}
#: Names a resource attribute may not take: they belong to the client.
CLIENT_ATTRIBUTES = frozenset(
    {"auth", "base_url", "close", "request", "retry_policy", "session", "timeout", "token_endpoint"}
)
EVENTS_GROUP = "events"
COMMON_GROUP = "common"
Returns = Literal["none", "model", "list", "page", "any"]


@dataclass
class Field:
    """A property of a model, or a keyword argument of an operation."""

    name: str
    key: str
    type: PyType
    required: bool
    description: str = ""
    location: str = "body"
    #: a query array sent comma-separated (``style: form``, ``explode: false``)
    delimited: bool = False

    @property
    def annotation(self) -> str:
        """Optional body fields may be left out (``UNSET``); other optional ones are None."""
        if self.required or self.location != "body":
            return self.type.annotation
        if self.type.nullable:
            return self.type.annotation.removesuffix(" | None") + " | Unset | None"
        return f"{self.type.annotation} | Unset"

    @property
    def reader(self) -> str:
        """The expression that reads this field from the JSON object ``data``."""
        if self.required:
            return self.type.convert(f'data["{self.key}"]')
        if not self.type.converter:
            return f'data.get("{self.key}", UNSET)'
        return f'UNSET if (u := data.get("{self.key}", UNSET)) is UNSET else ' + self.type.convert(
            "u"
        )


@dataclass
class Model:
    name: str
    description: str
    fields: list[Field]
    group: str = COMMON_GROUP
    etag: bool = False
    refs: set[str] = field(default_factory=set)

    @property
    def stdlib(self) -> set[str]:
        return {name for f in self.fields for name in f.type.stdlib}


@dataclass
class Operation:
    operation_id: str
    method: str
    path: str
    tag: str
    summary: str
    description: str
    deprecated: bool
    scopes: list[str]
    params: list[Field]
    body: list[Field] | None
    returns: Returns
    return_model: str | None
    idempotency_key: bool = False
    if_match: bool = False
    if_none_match: bool = False
    #: the sub-resources it is reached through, after the tag's: ``("members",)``
    chain: tuple[str, ...] = ()
    #: its method's name (:mod:`mars_server.sdkgen.naming`): ``list``
    method_name: str = ""
    #: for a list whose items may be partial (``?fields=``): the whole item's model, which
    #: the items are without ``fields``
    full_model: str | None = None

    @property
    def name(self) -> str:
        """The operationId as a Python name: the module constant that describes the call."""
        return identifier(self.operation_id)

    @property
    def positional(self) -> list[Field]:
        """The path parameters, in the path's order: what identifies the resource."""
        return [f for f in self.params if f.location == "path"]

    @property
    def keywords(self) -> list[Field]:
        """Every other argument but the special headers; required ones first."""
        return [f for f in self.arguments if f.location != "path"]

    @property
    def return_annotation(self) -> str:
        model = self.return_model or "Any"
        return {
            "none": "None",
            "model": model,
            "list": f"list[{model}]",
            "page": f"PageIterator[{model}]",
            "any": "Any",
        }[self.returns]

    @property
    def arguments(self) -> list[Field]:
        """Every keyword argument but the special headers; required ones first."""
        fields = [*self.params, *(self.body or [])]
        return sorted(fields, key=lambda f: not f.required)


@dataclass
class Document:
    title: str
    version: str
    models: dict[str, Model]
    operations: list[Operation]
    tags: dict[str, str]
    events: dict[str, str]

    def groups(self) -> dict[str, list[Model]]:
        grouped: dict[str, list[Model]] = defaultdict(list)
        for model in self.models.values():
            grouped[model.group].append(model)
        return dict(sorted(grouped.items()))

    def resources(self) -> dict[str, list[Operation]]:
        grouped: dict[str, list[Operation]] = defaultdict(list)
        for operation in self.operations:
            grouped[operation.tag].append(operation)
        return dict(sorted(grouped.items()))


def _name_methods(operations: list[Operation], spec: dict[str, Any]) -> None:
    """Give each operation its sub-resources and method (:mod:`mars_server.sdkgen.naming`);
    stop on two methods of one name in one resource, or a method named like a sub-resource."""
    known = naming.collections(spec.get("paths", {}))
    by_id = {
        op["operationId"]: op
        for item in spec.get("paths", {}).values()
        for method, op in item.items()
        if method in METHODS
    }
    taken: dict[tuple[str, ...], str] = {}
    for operation in operations:
        operation.chain = naming.chain(operation.tag, operation.path, known)
        operation.method_name = naming.method_name(
            by_id[operation.operation_id], operation.tag, operation.chain
        )
        where = (operation.tag, *operation.chain, operation.method_name)
        if where in taken:
            raise GeneratorError(
                f"{operation.operation_id} and {taken[where]} would both be "
                f"client.{'.'.join(identifier(w) for w in where)}: give one an "
                f"{naming.OVERRIDE}"
            )
        taken[where] = operation.operation_id
    resources = {
        (o.tag, *o.chain[:depth]) for o in operations for depth in range(1, 1 + len(o.chain))
    }
    for where, operation_id in taken.items():
        if where in resources:
            raise GeneratorError(
                f"{operation_id}'s method {where[-1]!r} is also a sub-resource: give it an "
                f"{naming.OVERRIDE}"
            )


class _Reader:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.schemas: dict[str, dict[str, Any]] = spec.get("components", {}).get("schemas", {})
        self.models: dict[str, Model] = {}
        self.tags_of: dict[str, set[str]] = defaultdict(set)

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Follow a ``$ref`` to a component (parameter, response, schema...)."""
        while "$ref" in node:
            _, _, kind, name = node["$ref"].split("/", 3)
            node = self.spec["components"][kind][name]
        return node

    def schema(self, name: str) -> dict[str, Any]:
        if name not in self.schemas:
            raise GeneratorError(f"$ref to unknown schema {name!r}")
        return self.schemas[name]

    def model(self, name: str, group: str, seen: set[str] | None = None) -> str:
        """Make a model of schema ``name`` (and of what it refers to); note its group."""
        seen = set() if seen is None else seen
        if name in seen:
            return name
        seen.add(name)
        self.tags_of[name].add(group)
        if name not in self.models:
            self.models[name] = self._build_model(name)
        for ref in sorted(self.models[name].refs):
            self.model(ref, group, seen)
        return name

    def _build_model(self, name: str) -> Model:
        schema = self.schema(name)
        required = set(schema.get("required", ()))
        partial = "x-mars-partial-of" in schema  # a list's item with the fields asked for
        # In a response, a read-only property is always there (MARS dumps every field of what
        # it returns; ``required`` cannot say so, since OpenAPI 3.1 applies it to requests
        # too), and so is one with a default (filled in when a request left it out).
        fields = [
            Field(
                identifier(key),
                key,
                py_type(prop, "response"),
                key in required
                or (not partial and (bool(prop.get("readOnly")) or "default" in prop)),
                prop.get("description", ""),
            )
            for key, prop in (schema.get("properties") or {}).items()
            if not prop.get("writeOnly")
        ]
        if "etag" in {f.name for f in fields}:
            raise GeneratorError(f"schema {name}: a property named 'etag' clashes with the SDK's")
        model = Model(name, schema.get("description") or schema.get("title") or "", fields)
        model.refs = {ref for f in fields for ref in f.type.refs}
        return model

    def body_fields(self, operation: dict[str, Any], where: str) -> list[Field] | None:
        body = operation.get("requestBody")
        if body is None:
            return None
        content = self.resolve(body).get("content", {})
        media = content.get("application/json")
        if media is None:
            raise GeneratorError(f"{where}: only application/json request bodies are supported")
        schema = media.get("schema", {})
        if "$ref" in schema:
            schema = self.schema(ref_name(schema["$ref"]))
        if schema.get("type") != "object" or "properties" not in schema:
            return [Field("body", "", py_type(schema, "request"), True, "The request body.")]
        required = set(schema.get("required", ()))
        return [
            Field(
                identifier(key),
                key,
                py_type(prop, "request"),
                key in required,
                prop.get("description", ""),
            )
            for key, prop in schema["properties"].items()
            if not prop.get("readOnly")
        ]

    def success(self, operation: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        responses = operation.get("responses", {})
        for status in sorted(s for s in responses if s.startswith("2")):
            response = self.resolve(responses[status])
            media = response.get("content", {}).get("application/json")
            return response, (media or {}).get("schema") if media else None
        return {}, None

    def returns(
        self, operation: dict[str, Any], params: list[Field], tag: str
    ) -> tuple[Returns, str | None, bool]:
        response, schema = self.success(operation)
        etag = "ETag" in response.get("headers", {})
        if schema is None:
            return "none", None, False
        if "$ref" not in schema:
            return "any", None, False
        target = self.schema(ref_name(schema["$ref"]))
        props = target.get("properties") or {}
        items = props.get("items", {}).get("items", {})
        if props.get("items", {}).get("type") == "array" and "$ref" in items:
            item = self.model(ref_name(items["$ref"]), tag)
            if set(props) == {"items", "next_cursor"} and "cursor" in {p.key for p in params}:
                return "page", item, False
            if set(props) == {"items"}:
                return "list", item, False
        name = self.model(ref_name(schema["$ref"]), tag)
        if etag:
            self.models[name].etag = True
        return "model", name, etag

    def operation(self, path: str, method: str, op: dict[str, Any], shared: list[Any]) -> Operation:
        where = f"{method.upper()} {path}"
        tag = op["tags"][0]
        params: list[Field] = []
        specials: set[str] = set()
        for raw in [*shared, *op.get("parameters", [])]:
            param = self.resolve(raw)
            wire, location = param["name"], param["in"]
            if location == "header" and wire.lower() in SPECIAL_HEADERS:
                specials.add(SPECIAL_HEADERS[wire.lower()])
                continue
            if location not in ("path", "query", "header"):
                raise GeneratorError(f"{where}: {location} parameters are not supported")
            kind = py_type(param.get("schema", {}), "request")
            required = location == "path" or bool(param.get("required"))
            if not required and not kind.nullable:
                kind = PyType(
                    f"{kind.annotation} | None", kind.converter, True, kind.refs, kind.stdlib
                )
            delimited = location == "query" and param.get("explode") is False
            params.append(
                Field(
                    identifier(wire),
                    wire,
                    kind,
                    required,
                    param.get("description", ""),
                    location,
                    delimited=delimited,
                )
            )
        body = self.body_fields(op, where)
        returns, model, etag = self.returns(op, params, tag)
        full_model = None
        if returns == "page" and model and any(f.delimited and f.key == "fields" for f in params):
            whole = self.schema(model).get("x-mars-partial-of")
            full_model = self.model(whole, tag) if whole else None
        names = [f.name for f in [*params, *(body or [])]] + sorted(specials)
        clashes = {n for n in names if names.count(n) > 1}
        if clashes:
            raise GeneratorError(f"{where}: arguments {sorted(clashes)} clash")
        scopes = sorted({s for req in op.get("security", []) for v in req.values() for s in v})
        return Operation(
            operation_id=op["operationId"],
            method=method.upper(),
            path=path,
            tag=tag,
            summary=op.get("summary", ""),
            description=op.get("description", ""),
            deprecated=bool(op.get("deprecated")),
            scopes=scopes,
            params=params,
            body=body,
            returns=returns,
            return_model=model,
            idempotency_key="idempotency_key" in specials,
            if_match="if_match" in specials,
            if_none_match="if_none_match" in specials and returns == "model" and etag,
            full_model=full_model,
        )

    def events(self) -> dict[str, str]:
        events = {}
        for name, item in sorted((self.spec.get("webhooks") or {}).items()):
            media = item.get("post", {}).get("requestBody", {}).get("content", {})
            schema = media.get("application/json", {}).get("schema", {})
            if "$ref" in schema:
                events[name] = self.model(ref_name(schema["$ref"]), EVENTS_GROUP)
        return events


def read_document(spec: dict[str, Any]) -> Document:
    """The models and operations of ``spec``, grouped as the SDK's modules are."""
    reader = _Reader(spec)
    operations = []
    for path, item in spec.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method in item:
                operations.append(reader.operation(path, method, item[method], shared))
    events = reader.events()
    for name, groups in reader.tags_of.items():
        reader.models[name].group = (
            identifier(next(iter(groups))) if len(groups) == 1 else COMMON_GROUP
        )
    tags = {t["name"]: t.get("description", "") for t in spec.get("tags", [])}
    for operation in operations:
        tags.setdefault(operation.tag, "")
        if identifier(operation.tag) in CLIENT_ATTRIBUTES:
            raise GeneratorError(f"tag {operation.tag!r} would hide the client's own attribute")
    _name_methods(operations, spec)
    operations.sort(key=lambda o: (o.tag, o.chain, o.method_name))
    return Document(
        title=spec.get("info", {}).get("title", "MARS API"),
        version=spec.get("info", {}).get("version", ""),
        models=dict(sorted(reader.models.items())),
        operations=operations,
        tags=tags,
        events=events,
    )
