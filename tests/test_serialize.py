"""Compiled dumps give what marshmallow gives; orjson bodies are the bytes Flask would send.

``mars_server.http.serialize`` replaces marshmallow's dump of response schemas, and
``mars_server.http.json`` Flask's JSON encoding of response bodies, for speed only: every
test here holds the fast path to the slow one, on generated objects, including the ones
marshmallow refuses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import types
import uuid

import flask
import flask_smorest
import marshmallow as ma
import pytest
from flask.json.provider import DefaultJSONProvider
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from mars_projects.models import Project
from mars_projects.schemas import (
    ProjectPageSchema,
    ProjectQueryArgsSchema,
    ProjectSchema,
    ProjectUpdateSchema,
)
from mars_server.db import new_id
from mars_server.http import Blueprint, Page, serialize
from mars_server.http.json import MarsJSONProvider
from mars_server.http.serialize import compile_dump, fast_dump_schema

GENERATED = settings(max_examples=150, deadline=None)


def shape(value):
    """``value`` with its types and dict key order made part of equality."""
    if isinstance(value, dict):
        return ("dict", [(key, shape(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [shape(item) for item in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value), value)


def outcome(dump, obj, **kwargs):
    """What a dump gives: its result, or the type of the exception it raised."""
    try:
        return ("returned", shape(dump(obj, **kwargs)))
    except Exception as exc:
        return ("raised", type(exc))


def assert_dumps_alike(schema, obj, **kwargs):
    compiled = compile_dump(schema)
    assert compiled is not None, f"{type(schema).__name__} fell back to marshmallow"
    assert outcome(compiled, obj, **kwargs) == outcome(schema.dump, obj, **kwargs)


# -- objects to dump -----------------------------------------------------------------------

ZONES = [None, dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")]
datetimes = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone), st.datetimes(), st.sampled_from(ZONES)
)
texts = st.text(max_size=20)
#: what a String field may be handed: text mostly, also None and things str() accepts
stringish = st.one_of(texts, texts, st.none(), st.integers(), st.binary(max_size=4))


def as_object(kind, values):
    """The same values as a dict, a plain object, or a dataclass-free namespace."""
    if kind == "dict":
        return dict(values)
    return types.SimpleNamespace(**values)


def objects_with(optional):
    """Mappings and objects holding any subset of ``optional``'s keys."""
    values = st.fixed_dictionaries({}, optional=optional)
    return st.builds(as_object, st.sampled_from(["dict", "object"]), values)


PROJECT_FIELDS = {
    "id": stringish,
    "slug": stringish,
    "name": stringish,
    "description": stringish,
    "visibility": stringish,
    "created_at": st.none() | datetimes,
    "updated_at": st.none() | datetimes,
    "version": st.integers(),
}
project_models = st.builds(
    lambda values: Project(**values),
    st.fixed_dictionaries(
        {},
        optional={
            key: st.none() | (datetimes if key.endswith("_at") else texts)
            for key in PROJECT_FIELDS
            if key != "version"
        },
    ),
)
projects = st.one_of(project_models, objects_with(PROJECT_FIELDS))
page_items = st.lists(st.one_of(projects, projects, projects, st.none()), max_size=6)
cursors = st.none() | texts
pages = st.one_of(
    st.builds(Page, page_items, cursors),
    st.builds(lambda items, cursor: {"items": items, "next_cursor": cursor}, page_items, cursors),
    objects_with({"items": page_items, "next_cursor": cursors}),
)


# -- the projects schemas ------------------------------------------------------------------


@GENERATED
@given(project=projects)
def test_project_schemas_dump_like_marshmallow(project):
    for schema in (ProjectSchema(), ProjectUpdateSchema(partial=True)):
        assert_dumps_alike(schema, project)


@GENERATED
@given(project_list=st.lists(projects, max_size=5))
def test_many_projects_dump_like_marshmallow(project_list):
    assert_dumps_alike(ProjectSchema(), project_list, many=True)
    assert_dumps_alike(ProjectSchema(many=True), project_list)
    assert_dumps_alike(ProjectSchema(many=True), project_list, many=False)


@GENERATED
@given(page=pages)
def test_page_schema_dumps_like_marshmallow(page):
    assert_dumps_alike(ProjectPageSchema(), page)


@pytest.mark.parametrize("next_cursor", [None, "eyJhIjoxfQ.c2lnbmF0dXJl"])
def test_a_page_of_models_is_dumped_exactly(next_cursor):
    when = dt.datetime(2026, 11, 22, 3, 4, 5, 678901, tzinfo=dt.UTC)
    items = [
        Project(
            id=f"prj_{n}",
            slug=f"p-{n}",
            name="Zoë ✓",
            description="",
            visibility="public",
            created_at=when,
            updated_at=when,
        )
        for n in range(3)
    ]
    dumped = compile_dump(ProjectPageSchema())(Page(items, next_cursor))
    assert list(dumped) == ["items", "next_cursor"]
    assert dumped["next_cursor"] == next_cursor
    assert dumped["items"][0] == {
        "id": "prj_0",
        "slug": "p-0",
        "name": "Zoë ✓",
        "description": "",
        "visibility": "public",
        "created_at": "2026-11-22T03:04:05.678901+00:00",
        "updated_at": "2026-11-22T03:04:05.678901+00:00",
    }
    assert dumped == ProjectPageSchema().dump(Page(items, next_cursor))


def test_load_only_and_dump_only_are_respected():
    class Account(ma.Schema):
        email = ma.fields.String()
        password = ma.fields.String(load_only=True)
        id = ma.fields.String(dump_only=True)

    account = {"email": "a@example.test", "password": "hunter2", "id": "usr_1"}
    assert compile_dump(Account())(account) == {"email": "a@example.test", "id": "usr_1"}
    assert compile_dump(Account(load_only=("email",)))(account) == {"id": "usr_1"}


# -- every field type, and what the compiler leaves to marshmallow ------------------------


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class ChildSchema(ma.Schema):
    n = ma.fields.Integer()
    label = ma.fields.String(data_key="Label", allow_none=True)


class EverythingSchema(ma.Schema):
    s = ma.fields.String(allow_none=True)
    i = ma.fields.Integer()
    i_text = ma.fields.Integer(as_string=True)
    f = ma.fields.Float()
    b = ma.fields.Boolean()
    raw = ma.fields.Raw()
    dec = ma.fields.Decimal()
    uid = ma.fields.UUID()
    email = ma.fields.Email()
    url = ma.fields.Url()
    when = ma.fields.DateTime()
    when_rfc = ma.fields.DateTime(format="rfc")
    when_ts = ma.fields.DateTime(format="timestamp")
    when_own = ma.fields.DateTime(format="%Y/%m/%d %H.%M")
    aware = ma.fields.AwareDateTime(format="iso")
    naive = ma.fields.NaiveDateTime()
    day = ma.fields.Date()
    clock = ma.fields.Time()
    child = ma.fields.Nested(ChildSchema, allow_none=True)
    children = ma.fields.Nested(ChildSchema, many=True)
    child_list = ma.fields.List(ma.fields.Nested(ChildSchema))
    only_n = ma.fields.Nested(ChildSchema, only=("n",))
    by_name = ma.fields.Nested("ChildSchema", exclude=("n",))
    tags = ma.fields.List(ma.fields.String())
    grid = ma.fields.List(ma.fields.List(ma.fields.Integer()))
    meta = ma.fields.Dict()
    scores = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Float())
    renamed = ma.fields.String(data_key="renamedKey")
    source = ma.fields.String(attribute="other")
    deep = ma.fields.Integer(attribute="inner.value")
    secret = ma.fields.String(load_only=True)
    read_only = ma.fields.String(dump_only=True)
    computed = ma.fields.Method("compute")
    func = ma.fields.Function(lambda obj: type(obj).__name__)
    const = ma.fields.Constant(7)
    colour = ma.fields.Enum(Colour)
    plucked = ma.fields.Pluck(ChildSchema, "n")
    pair = ma.fields.Tuple((ma.fields.Integer(), ma.fields.String()))
    defaulted = ma.fields.String(dump_default="default")
    defaulted_by_call = ma.fields.Integer(dump_default=lambda: 42)

    def compute(self, obj):
        return f"computed for a {type(obj).__name__}"


children = objects_with({"n": st.integers() | st.none() | texts, "label": stringish})
numbers = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.none(), st.booleans(), texts, st.decimals()
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
EVERYTHING = {
    "s": stringish,
    "i": numbers,
    "i_text": numbers,
    "f": numbers,
    "b": st.none() | st.booleans() | st.integers(0, 1) | texts,
    "raw": json_values,
    "dec": st.none() | st.decimals(allow_nan=False, allow_infinity=False) | st.integers(),
    "uid": st.none() | st.uuids(),
    "email": stringish,
    "url": stringish,
    "when": st.none() | datetimes,
    "when_rfc": st.none() | datetimes,
    "when_ts": st.none() | datetimes,
    "when_own": st.none() | datetimes,
    "aware": st.none() | datetimes | st.dates(),
    "naive": st.none() | datetimes,
    "day": st.none() | st.dates(),
    "clock": st.none() | st.times(),
    "child": st.none() | children,
    "children": st.none() | st.lists(children | st.none(), max_size=3),
    "child_list": st.none() | st.lists(children | st.none(), max_size=3),
    "only_n": st.none() | children,
    "by_name": st.none() | children,
    "tags": st.none() | st.lists(stringish, max_size=3),
    "grid": st.none() | st.lists(st.lists(numbers, max_size=3), max_size=3),
    "meta": st.none() | st.dictionaries(texts, json_values, max_size=3),
    "scores": st.none() | st.dictionaries(texts, numbers, max_size=3),
    "renamed": stringish,
    "other": stringish,
    "inner": objects_with({"value": numbers}),
    "secret": stringish,
    "read_only": stringish,
    "colour": st.none() | st.sampled_from(Colour),
    "plucked": st.none() | children,
    "pair": st.none() | st.tuples(st.integers(), texts),
    "defaulted": stringish,
    "defaulted_by_call": numbers,
}
everythings = st.one_of(
    objects_with(EVERYTHING),
    st.builds(as_object, st.sampled_from(["dict", "object"]), st.fixed_dictionaries(EVERYTHING)),
)
#: fields marshmallow reads itself (Method, Function, Constant) or through a dotted path
NOT_PLAIN = ("computed", "func", "const", "deep")


@GENERATED
@given(thing=everythings)
def test_every_field_type_dumps_like_marshmallow(thing):
    assert_dumps_alike(EverythingSchema(), thing)
    # without them, an object with every attribute takes the compiler's shortest path
    assert_dumps_alike(EverythingSchema(exclude=NOT_PLAIN), thing)


@GENERATED
@given(things=st.lists(everythings, max_size=3))
def test_options_and_many_dump_like_marshmallow(things):
    assert_dumps_alike(EverythingSchema(many=True), things)
    assert_dumps_alike(EverythingSchema(only=("s", "child", "deep", "computed")), things, many=True)
    assert_dumps_alike(EverythingSchema(exclude=("i", "children"), dump_only=("s",)), things[:1])


def test_objects_that_lack_attributes_take_the_general_path():
    class Half:
        id = "prj_1"

        @property
        def name(self):
            raise AttributeError("computed later")

    assert_dumps_alike(ProjectSchema(), Half())
    assert compile_dump(ProjectSchema())(Half()) == {"id": "prj_1"}


class Shadowed:
    """A property wins over an instance dict entry of the same name."""

    def __init__(self):
        vars(self).update(dict.fromkeys(PROJECT_FIELDS, "from the dict"))
        vars(self).update(created_at=None, updated_at=None)

    @property
    def name(self):
        return "from the property"


class ClassDefaults:
    """A class attribute is what getattr finds when the instance has none."""

    description = "a class default"

    def __init__(self, **values):
        vars(self).update(values)


class Indexable:
    """marshmallow reads objects with ``__getitem__`` by key first."""

    def __init__(self):
        vars(self).update(dict.fromkeys(PROJECT_FIELDS, "from the dict"))
        vars(self).update(created_at=None, updated_at=None)

    def __getitem__(self, key):
        if key == "name":
            return "by key"
        raise KeyError(key)


@pytest.mark.parametrize(
    "project",
    [
        Shadowed(),
        ClassDefaults(id="prj_1", slug="s", name="n", visibility="public"),
        ClassDefaults(
            id="prj_1",
            slug="s",
            name="n",
            description="own",
            visibility="public",
            created_at=None,
            updated_at=None,
        ),
        Indexable(),
    ],
    ids=["property", "class-attribute", "all-own", "getitem"],
)
def test_attributes_are_read_as_getattr_reads_them(project):
    assert_dumps_alike(ProjectSchema(), project)
    assert_dumps_alike(ProjectSchema(), [project, project], many=True)


def test_a_self_nesting_schema_is_compiled_to_a_depth_then_left_to_marshmallow():
    class NodeSchema(ma.Schema):
        name = ma.fields.String()
        children = ma.fields.List(ma.fields.Nested(lambda: NodeSchema()))

    def tree(depth):
        return {"name": f"level {depth}", "children": [tree(depth + 1)] if depth < 20 else []}

    assert_dumps_alike(NodeSchema(), tree(0))


def test_an_unknown_nested_schema_raises_as_marshmallow_does():
    class Broken(ma.Schema):
        child = ma.fields.Nested("NoSuchSchemaAnywhere")

    with pytest.raises(ma.exceptions.RegistryError):
        compile_dump(Broken())({"child": None})


def test_a_custom_get_attribute_is_used():
    class Upper(ma.Schema):
        name = ma.fields.String()

        def get_attribute(self, obj, attr, default):
            return obj.get(attr.upper(), default)

    assert_dumps_alike(Upper(), {"NAME": "x", "name": "y"})
    assert compile_dump(Upper())({"NAME": "x"}) == {"name": "x"}


class WithPostDump(ProjectSchema):
    @ma.post_dump
    def envelope(self, data, **kwargs):
        return {"project": data}


class WithPreDump(ProjectSchema):
    @ma.pre_dump
    def rename(self, obj, **kwargs):
        return {"id": "prj_pre", **obj}


class WithOwnDump(ProjectSchema):
    def dump(self, obj, *, many=None):
        return "mine"


@pytest.mark.parametrize("schema_class", [WithPostDump, WithPreDump, WithOwnDump])
def test_schemas_with_dump_hooks_are_left_to_marshmallow(schema_class):
    project = {"id": "prj_1", "name": "Apollo"}
    assert compile_dump(schema_class()) is None
    fast = fast_dump_schema(schema_class)
    assert fast.dump(project) == schema_class().dump(project)
    assert not hasattr(fast.dump, "__mars_compiled__")
    assert fast.dump(project) == schema_class().dump(project)


def test_a_nested_schema_with_hooks_is_dumped_by_marshmallow_inside_a_compiled_one():
    class Holder(ma.Schema):
        project = ma.fields.Nested(WithPostDump)
        projects = ma.fields.List(ma.fields.Nested(WithPreDump))

    holder = {"project": {"id": "prj_1"}, "projects": [{"name": "a"}, None]}
    assert_dumps_alike(Holder(), holder)
    assert compile_dump(Holder())(holder)["project"] == {"project": {"id": "prj_1"}}


# -- how the Blueprint uses it -------------------------------------------------------------


def test_fast_dump_schema_compiles_on_first_use_and_leaves_the_given_instance_alone(
    monkeypatch,
):
    compiled = []
    real = serialize.compile_dump
    monkeypatch.setattr(
        serialize, "compile_dump", lambda schema: compiled.append(schema) or real(schema)
    )
    given_instance = ProjectPageSchema()
    fast = fast_dump_schema(given_instance)
    assert fast is not given_instance
    assert "dump" not in vars(given_instance)
    page = Page([{"id": "prj_1", "name": "Apollo"}], None)
    for _ in range(3):
        assert fast.dump(page) == given_instance.dump(page)
    assert compiled == [fast]
    assert fast.dump.__mars_compiled__


def test_a_schema_that_fails_to_compile_keeps_marshmallows_dump(monkeypatch, caplog):
    def fail(schema):
        raise RuntimeError("compiler bug")

    monkeypatch.setattr(serialize, "compile_dump", fail)
    fast = fast_dump_schema(ProjectSchema)
    assert fast.dump({"id": "prj_1"}) == {"id": "prj_1"}
    assert "cannot compile" in caplog.text
    assert fast.dump.__func__ is ma.Schema.dump


class CountedArgsSchema(ma.Schema):
    made = 0
    limit = ma.fields.Integer(validate=ma.validate.Range(min=1, max=10))

    def __init__(self, *args, **kwargs):
        type(self).made += 1
        super().__init__(*args, **kwargs)


class ItemSchema(ma.Schema):
    name = ma.fields.String()
    at = ma.fields.AwareDateTime(format="iso")


def small_api(blueprint_class, monkeypatch=None):
    """A bare flask-smorest app with one list endpoint, on ``blueprint_class``."""
    app = flask.Flask(__name__)
    app.config.update(API_TITLE="t", API_VERSION="1", OPENAPI_VERSION="3.1.0")
    api = flask_smorest.Api(app)
    blp = blueprint_class("things", __name__, url_prefix="/things")

    @blp.route("")
    @blp.arguments(CountedArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, ItemSchema(many=True))
    def things(limit=3):
        """List things"""
        when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        return [types.SimpleNamespace(name=f"thing {n}", at=when) for n in range(limit)]

    @blp.route("/<int:n>", methods=["PATCH"])
    @blp.arguments(ProjectUpdateSchema(partial=True))
    @blp.arguments(ProjectQueryArgsSchema, location="query")
    @blp.response(200, ProjectSchema)
    def patch(data, query, n):
        """Change a thing"""
        return data

    api.register_blueprint(blp)
    return app, api


def test_an_argument_schema_class_is_built_once_not_per_request():
    CountedArgsSchema.made = 0
    app, _ = small_api(Blueprint)
    assert CountedArgsSchema.made == 1
    client = app.test_client()
    for limit in (1, 2, 3):
        response = client.get(f"/things?limit={limit}")
        assert response.status_code == 200
        assert [item["name"] for item in response.json] == [f"thing {n}" for n in range(limit)]
    assert client.get("/things?limit=11").status_code == 422
    assert CountedArgsSchema.made == 1


def test_the_response_is_marshmallows_dump():
    app, _ = small_api(Blueprint)
    response = app.test_client().get("/things?limit=2")
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    expected = ItemSchema(many=True).dump(
        [types.SimpleNamespace(name=f"thing {n}", at=when) for n in range(2)]
    )
    assert (
        response.json
        == expected
        == [
            {"name": "thing 0", "at": "2026-01-02T03:04:05+00:00"},
            {"name": "thing 1", "at": "2026-01-02T03:04:05+00:00"},
        ]
    )


def test_the_openapi_document_is_flask_smorests():
    _, mars_api = small_api(Blueprint)
    _, smorest_api = small_api(flask_smorest.Blueprint)
    assert mars_api.spec.to_dict() == smorest_api.spec.to_dict()


# -- JSON ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    when: dt.date


SAME_BYTES = [
    {"b": 1, "a": [1, 2.5, None, True, False, "x"]},
    [],
    None,
    "plain",
    {"name": "Zoë ✓ 東京", "emoji": "\U0001f680"},
    {"controls": "".join(map(chr, range(32))) + '\x7f"\\/'},
    {"when": dt.datetime(2026, 11, 22, 3, 4, 5, tzinfo=dt.UTC), "naive": dt.datetime(2026, 1, 1)},
    {"day": dt.date(2026, 2, 3)},
    Point(1, dt.date(2026, 2, 3)),
    {"amount": decimal.Decimal("1.10"), "id": uuid.UUID(int=7)},
    {"huge": 2**70, "negative": -(2**64)},
    {"pair": (1, 2)},
    {"lone surrogate": "\ud800"},
    {"markup": Markup("<b>x</b>")},
]


@pytest.fixture
def flask_app():
    return flask.Flask(__name__)


def bodies(app, obj, *, sort_keys=False):
    fast, plain = MarsJSONProvider(app), DefaultJSONProvider(app)
    fast.sort_keys = plain.sort_keys = sort_keys
    with app.app_context():
        return fast.response(obj), plain.response(obj)


@pytest.mark.parametrize("sort_keys", [False, True])
@pytest.mark.parametrize("obj", SAME_BYTES)
def test_json_bodies_are_the_bytes_flask_sends(flask_app, obj, sort_keys):
    fast, plain = bodies(flask_app, obj, sort_keys=sort_keys)
    assert fast.get_data() == plain.get_data()
    assert fast.mimetype == plain.mimetype == "application/json"


def test_non_string_keys_are_written_as_flask_writes_them(flask_app):
    fast, plain = bodies(flask_app, {1: "one", None: "null", 2.5: "float", False: "bool"})
    assert (
        fast.get_data()
        == plain.get_data()
        == (b'{"1":"one","null":"null","2.5":"float","false":"bool"}\n')
    )


def test_json_bodies_in_debug_mode_are_flasks_indented_ones(flask_app):
    flask_app.debug = True
    fast, plain = bodies(flask_app, {"b": 1, "a": [1, 2]})
    assert fast.get_data() == plain.get_data() == b'{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}\n'


def test_what_flask_cannot_encode_still_raises(flask_app):
    with flask_app.app_context(), pytest.raises(TypeError, match="not JSON serializable"):
        MarsJSONProvider(flask_app).response({"x": object()})


@GENERATED
@given(obj=json_values)
def test_generated_json_bodies_are_the_bytes_flask_sends(obj):
    fast, plain = bodies(flask.Flask(__name__), obj)
    assert fast.get_data() == plain.get_data()


@GENERATED
@given(number=st.floats(allow_nan=False, allow_infinity=False))
def test_floats_decode_to_the_same_number(number):
    fast, plain = bodies(flask.Flask(__name__), {"f": number})
    assert json.loads(fast.get_data()) == json.loads(plain.get_data())


# -- through the app -----------------------------------------------------------------------


def test_the_projects_list_is_marshmallows_dump_of_the_stored_rows(client, db):
    names = ("Zoë ✓", "東京", "plain")
    db.session.add_all(
        Project(id=new_id("prj"), slug=f"s{n}", name=name, visibility="public")
        for n, name in enumerate(names)
    )
    db.session.commit()
    first = client.get("/api/v1/projects?limit=2")
    second = client.get(f"/api/v1/projects?limit=2&cursor={first.json['next_cursor']}")
    stored = db.session.scalars(db.select(Project).order_by(Project.id)).all()
    for response, rows in ((first, stored[:2]), (second, stored[2:])):
        assert response.status_code == 200
        assert response.json == ProjectPageSchema().dump(Page(rows, response.json["next_cursor"]))
    assert first.json["next_cursor"] and second.json["next_cursor"] is None
    # an attribute that is not loaded is loaded, as marshmallow's getattr loads it
    db.session.expire(stored[0], ["name", "updated_at"])
    assert "name" not in vars(stored[0])
    assert compile_dump(ProjectSchema())(stored[0]) == ProjectSchema().dump(stored[0])
    assert vars(stored[0])["name"] in names
    # non-ASCII is escaped, as Flask's json sends it
    assert b"Zo\\u00eb \\u2713" in first.get_data() + second.get_data()
    assert first.json["items"][0]["created_at"].endswith("+00:00")


def test_problems_are_still_problem_json(client):
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json["request_id"] == response.headers["X-Request-ID"]
