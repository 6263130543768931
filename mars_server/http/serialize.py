"""Fast response bodies: response schemas compiled to plain functions.

marshmallow stays the source of truth. :func:`compile_dump` reads a schema's bound fields
and writes one Python function that returns what ``schema.dump`` returns, without
marshmallow's machinery per value (a ``serialize`` call, an accessor, ``get_value`` and
``_serialize`` for every field of every object). Fields whose ``_serialize`` it knows
(String, Integer, Float, Boolean, Raw, UUID, the date and time fields, Nested, List, Dict
without key or value fields) become inline expressions; any other field is called through
its own marshmallow methods, exactly as ``Schema._serialize`` calls it. A schema whose dump
it cannot reproduce (``@pre_dump``/``@post_dump`` hooks, an overridden ``dump`` or
``_serialize``) is left to marshmallow. ``tests/test_serialize.py`` holds the two to the
same output.

The JSON encoding of what a dump returns is :mod:`mars_server.http.json`'s.
"""

from __future__ import annotations

import copy
import itertools
import keyword
import logging
from typing import TYPE_CHECKING, Any

import marshmallow as ma
from marshmallow import fields as mf
from marshmallow.decorators import POST_DUMP, PRE_DUMP
from marshmallow.utils import ensure_text_type, get_value, missing
from sqlalchemy.orm.attributes import InstrumentedAttribute

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

#: Nested schemas deeper than this are dumped by marshmallow: a schema that nests itself
#: through a callable gets a new instance at every level, so compiling ahead never ends.
MAX_DEPTH = 8


class _Source:
    """The lines of one generated function and the objects its names stand for."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {
            "_missing": missing,
            "_getattr": getattr,
            "_hasattr": hasattr,
            "_get_value": get_value,
            "_text": ensure_text_type,
        }
        self.lines: list[str] = []
        #: one compiled function per nested schema instance, shared by both paths
        self.nested: dict[int, Any] = {}
        self._numbers = itertools.count()

    def name(self, value: Any) -> str:
        """A global name in the generated code bound to ``value``."""
        name = f"_c{next(self._numbers)}"
        self.namespace[name] = value
        return name

    def variable(self) -> str:
        return f"x{next(self._numbers)}"

    def function(self, name: str, filename: str) -> Callable[..., Any]:
        code = compile("\n".join(self.lines), filename, "exec")
        exec(code, self.namespace)  # noqa: S102  (our own code, built from field types)
        return self.namespace[name]


def _dumps_like_marshmallow(schema: ma.Schema, *, top: bool) -> bool:
    """Whether ``schema.dump`` is marshmallow's plain one, which compiling reproduces."""
    kind = type(schema)
    return (
        kind.dump is ma.Schema.dump
        and kind._serialize is ma.Schema._serialize
        and not schema._hooks[PRE_DUMP]
        and not schema._hooks[POST_DUMP]
        # an instance-level ``dump`` set by someone else wins (ours is set on top only)
        and (top or "dump" not in vars(schema))
    )


def _value_expression(
    field: mf.Field, var: str, attr_name: str, source: _Source, depth: int
) -> str:
    """An expression equal to ``field._serialize(<var>, attr_name, obj)``."""
    kind: Any = type(field)
    impl = kind._serialize
    if impl is mf.Field._serialize:  # Raw, Boolean, ...: the value as it is
        return var
    if impl is mf.String._serialize:
        return f"({var} if type({var}) is str else None if {var} is None else _text({var}))"
    if impl is mf.UUID._serialize:
        return f"(None if {var} is None else str({var}))"
    if (
        impl is mf.Number._serialize
        and kind._format_num is mf.Number._format_num
        and kind._to_string is mf.Number._to_string
    ):
        num_type = field.num_type  # type: ignore[attr-defined]
        if num_type in (int, float):
            typename = num_type.__name__
            number = f"({var} if type({var}) is {typename} else {typename}({var}))"
        else:
            number = f"{source.name(num_type)}({var})"
        if field.as_string:  # type: ignore[attr-defined]
            number = f"str({number})"
        return f"(None if {var} is None else {number})"
    if impl is mf._TemporalField._serialize:
        temporal: Any = field
        data_format = temporal.format or temporal.DEFAULT_FORMAT
        formatter = temporal.SERIALIZATION_FUNCS.get(data_format)
        if formatter:
            return f"(None if {var} is None else {source.name(formatter)}({var}))"
        return f"(None if {var} is None else {var}.strftime({source.name(data_format)}))"
    if impl is mf.Mapping._serialize:
        mapping: Any = field
        if not mapping.value_field and not mapping.key_field:
            return f"(None if {var} is None else {source.name(mapping.mapping_type)}({var}))"
    if impl is mf.List._serialize:
        item = source.variable()
        inner = _value_expression(field.inner, item, attr_name, source, depth)  # type: ignore[attr-defined]
        return f"(None if {var} is None else [{inner} for {item} in {var}])"
    if impl is mf.Nested._serialize:
        nested_field: Any = field
        try:
            nested = nested_field.schema
        except Exception:  # e.g. an unknown schema name: marshmallow raises it at dump time
            nested = None
        if nested is not None:
            many = bool(nested.many or nested_field.many)
            if id(nested) not in source.nested:
                source.nested[id(nested)] = (
                    _compile_object(nested, depth + 1) if depth < MAX_DEPTH else None
                )
            one = source.nested[id(nested)]
            if one is None:
                return (
                    f"(None if {var} is None else {source.name(nested.dump)}({var}, many={many}))"
                )
            one_name = source.name(one)
            if many:
                item = source.variable()
                return f"(None if {var} is None else [{one_name}({item}) for {item} in {var}])"
            return f"(None if {var} is None else {one_name}({var}))"
    # Any other field: its own _serialize, as marshmallow calls it.
    return f"{source.name(field)}._serialize({var}, {attr_name!r}, obj)"


def _plain_field(field: mf.Field) -> bool:
    """Whether ``Schema._serialize`` would read the field's value with the accessor."""
    kind = type(field)
    return (
        kind.serialize is mf.Field.serialize
        and kind.get_value is mf.Field.get_value
        and field._CHECK_ATTRIBUTE
    )


def _reads_from_dict(cls: type, names: tuple[str, ...]) -> bool:
    """Whether ``obj.__dict__[name]``, where present, is what ``getattr(obj, name)`` gives.

    True when marshmallow reads instances of ``cls`` with getattr (no ``__getitem__``), the
    class keeps plain attribute lookup, and no ``name`` is a data descriptor on the class
    (which would win over the instance dict) other than a SQLAlchemy column attribute,
    whose ``__get__`` returns the loaded value from ``__dict__``. Reading ``__dict__``
    skips the descriptor call, the larger part of dumping an ORM object.
    """
    if cls.__getattribute__ is not object.__getattribute__ or hasattr(cls, "__getitem__"):
        return False
    if not getattr(cls, "__dictoffset__", 0):
        return False
    for name in names:
        attr = next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), None)
        if attr is None:
            continue
        kind = type(attr)
        if getattr(kind, "__get__", None) is InstrumentedAttribute.__get__:
            impl = getattr(attr, "impl", None)
            if impl is None or attr.key != name or not impl.supports_population:
                return False
        elif hasattr(kind, "__set__") or hasattr(kind, "__delete__"):
            return False  # a property or another data descriptor
    return True


def _attribute_fast_path(schema: ma.Schema, source: _Source, depth: int) -> list[str]:
    """Lines for the common case: an object (not a mapping) that has every attribute.

    Then ``getattr(obj, name, missing)`` is ``obj.name`` (or, for classes where that is the
    same, ``obj.__dict__[name]``: see :func:`_reads_from_dict`), no dump default applies,
    and the result is one dict display. An attribute that is absent (or not loaded) sends
    the object down the general path after it, which reads each attribute as marshmallow
    does.
    """
    names, dict_reads, attribute_reads, items = [], [], [], []
    for number, (attr_name, field) in enumerate(schema.dump_fields.items()):
        where = field.attribute if field.attribute is not None else attr_name
        if not _plain_field(field) or not where.isidentifier() or keyword.iskeyword(where):
            return []
        names.append(where)
        key = field.data_key if field.data_key is not None else attr_name
        dict_reads.append(f"            v{number} = d[{where!r}]")
        attribute_reads.append(f"            v{number} = obj.{where}")
        value = _value_expression(field, f"v{number}", attr_name, source, depth)
        items.append(f"                {key!r}: {value},")
    if not names:
        return []
    by_dict: dict[type, bool] = {}

    def learn(cls: type) -> bool:
        by_dict[cls] = result = _reads_from_dict(cls, tuple(names))
        return result

    ret = ["            return {", *items, "            }"]
    return [
        f"    by_dict = {source.name(by_dict)}.get(type(obj))",
        "    if by_dict is None:",
        f"        by_dict = {source.name(learn)}(type(obj))",
        "    if by_dict:",
        "        d = obj.__dict__",
        "        try:",
        *dict_reads,
        "        except KeyError:",
        "            pass",
        "        else:",
        *ret,
        "    elif not _hasattr(obj, '__getitem__'):",
        "        try:",
        *attribute_reads,
        "        except AttributeError:",
        "            pass",
        "        else:",
        *ret,
    ]


def _compile_object(schema: ma.Schema, depth: int, *, top: bool = False) -> Any:
    """A function dumping one object as ``schema`` does, or None when it cannot."""
    if not _dumps_like_marshmallow(schema, top=top):
        return None
    kind = type(schema)
    source = _Source()
    default_accessor = kind.get_attribute is ma.Schema.get_attribute
    accessor = source.name(schema.get_attribute)
    lines = source.lines
    lines.append("def dump_one(obj):")
    if default_accessor and schema.dict_class is dict:
        lines.extend(_attribute_fast_path(schema, source, depth))
    if default_accessor:
        # marshmallow's get_value: obj[key] for objects with __getitem__, else getattr
        lines.append("    get = _get_value if _hasattr(obj, '__getitem__') else _getattr")
    else:
        lines.append(f"    get = {accessor}")
    dict_class = schema.dict_class
    lines.append("    ret = {}" if dict_class is dict else f"    ret = {source.name(dict_class)}()")
    for attr_name, field in schema.dump_fields.items():
        key = field.data_key if field.data_key is not None else attr_name
        if not _plain_field(field):  # Method, Function, Constant, custom: marshmallow's path
            lines.append(f"    v = {source.name(field)}.serialize({attr_name!r}, obj, {accessor})")
            lines.append("    if v is not _missing:")
            lines.append(f"        ret[{key!r}] = v")
            continue
        where = field.attribute if field.attribute is not None else attr_name
        getter = "_get_value" if default_accessor and "." in where else "get"
        lines.append(f"    v = {getter}(obj, {where!r}, _missing)")
        default = field.dump_default
        if default is not missing:
            default_name = source.name(default)
            lines.append("    if v is _missing:")
            call = "()" if callable(default) else ""
            lines.append(f"        v = {default_name}{call}")
        expression = _value_expression(field, "v", attr_name, source, depth)
        lines.append("    if v is not _missing:")
        lines.append(f"        ret[{key!r}] = {expression}")
    lines.append("    return ret")
    return source.function("dump_one", f"<mars dump of {kind.__module__}.{kind.__qualname__}>")


def compile_dump(schema: ma.Schema) -> Callable[..., Any] | None:
    """A function returning what ``schema.dump(obj, many=...)`` returns, or None.

    None when the schema's dump cannot be reproduced (dump hooks, overridden ``dump`` or
    ``_serialize``). The schema's fields are read now: compile after they are final.
    """
    one = _compile_object(schema, 0, top=True)
    if one is None:
        return None

    def dump(obj: Any, *, many: bool | None = None) -> Any:
        if (schema.many if many is None else many) and obj is not None:
            return [one(item) for item in obj]
        return one(obj)

    dump.__mars_compiled__ = True  # type: ignore[attr-defined]
    return dump


def fast_dump_schema(
    schema: ma.Schema | type[ma.Schema], *, then: Callable[[Any], Any] | None = None
) -> ma.Schema:
    """A private instance of ``schema`` whose ``dump`` is compiled when first called.

    A copy, so that an instance used elsewhere (or copied by ``Nested``) is never changed.
    Compiling waits for the first dump because ``Nested("Name")`` may name a schema that is
    defined after the view. If it fails, marshmallow's dump is kept (and a warning logged).

    :param then: applied to every dump's result (a list's ``?fields=``).
    """
    instance = schema() if isinstance(schema, type) else copy.copy(schema)
    marshmallow_dump = instance.dump

    def compile_then_dump(obj: Any, *, many: bool | None = None) -> Any:
        try:
            compiled = compile_dump(instance)
        except Exception:
            log.warning("cannot compile %r; marshmallow dumps it", instance, exc_info=True)
            compiled = None
        dump = compiled or marshmallow_dump
        if then is not None:
            plain = dump

            def dump(obj: Any, *, many: bool | None = None) -> Any:
                return then(plain(obj, many=many))

        instance.dump = dump  # type: ignore[method-assign]
        return instance.dump(obj, many=many)

    instance.dump = compile_then_dump  # type: ignore[method-assign]
    return instance
