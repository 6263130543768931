"""The generator: the committed SDK is what it makes, and what it makes is precise Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mars_server.ops.commands import openapi_document
from mars_server.sdkgen import GENERATED, GeneratorError, generate, generated_files
from mars_server.sdkgen.document import read_document

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mars_sdk" / "src" / "mars_sdk"


@pytest.mark.mars_backend("sqlite")
def test_the_committed_sdk_is_what_the_generator_makes(app, tmp_path):
    """Fails on any difference: run `mars sdk generate` and commit the result."""
    written = generate(openapi_document(), tmp_path)
    made = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in written}
    committed = {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in generated_files(PACKAGE)}
    assert sorted(made) == sorted(committed), "generated files added or removed"
    stale = [name for name in made if made[name] != committed[name]]
    assert not stale, f"regenerate the SDK (`mars sdk generate`): {stale} differ"
    spec = openapi_document()
    operations = {
        o["operationId"]
        for item in spec["paths"].values()
        for o in item.values()
        if isinstance(o, dict) and "operationId" in o
    }
    methods = "\n".join(made[name] for name in made if name.startswith("resources/"))
    declared = methods.replace("Operation(\n    ", "Operation(")
    assert all(f'Operation("{op}"' in declared for op in operations)


@pytest.mark.mars_backend("sqlite")
def test_mars_sdk_generate_writes_only_into_the_sdk_package(runner, tmp_path):
    refused = runner.invoke(args=["sdk", "generate", "--out", str(tmp_path)])
    assert refused.exit_code != 0 and "is not the mars_sdk package" in refused.output
    (tmp_path / "_client.py").write_text("# the runtime\n")
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "gone.py").write_text(f'"""{GENERATED}"""\n')  # a tag gone
    (tmp_path / "resources" / "mine.py").write_text('"""Written by hand."""\n')
    result = runner.invoke(args=["sdk", "generate", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (tmp_path / "resources" / "projects.py").is_file()
    assert not (tmp_path / "resources" / "gone.py").exists()
    assert (tmp_path / "resources" / "mine.py").exists()


def test_importing_the_sdk_imports_nothing_of_the_server():
    code = "import sys, mars_sdk, mars_sdk.webhooks, mars_sdk.events; print(sorted(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    modules = json.loads(result.stdout.replace("'", '"'))
    assert "mars_sdk.client" in modules
    assert not [m for m in modules if m.split(".")[0] in ("flask", "mars_server", "werkzeug")]


# -- a small document with every kind of field -------------------------------------------------

STRING, INTEGER = {"type": "string"}, {"type": "integer"}
SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "Test API", "version": "1"},
    "tags": [{"name": "things", "description": "Things people keep."}],
    "paths": {
        "/api/v1/things": {
            "get": {
                "operationId": "list_things",
                "summary": "List things",
                "tags": ["things"],
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                ],
                "responses": {
                    "200": {
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ThingPage"}
                            }
                        }
                    }
                },
            },
            "post": {
                "operationId": "create_thing",
                "summary": "Create a thing",
                "tags": ["things"],
                "parameters": [{"$ref": "#/components/parameters/IDEMPOTENCY_KEY"}],
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}
                    }
                },
                "responses": {
                    "201": {
                        "headers": {"ETag": {"schema": {"type": "string"}}},
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}
                        },
                    }
                },
            },
        },
        "/api/v1/things/{thing_id}": {
            "parameters": [
                {"name": "thing_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "delete": {
                "operationId": "deleteThing",
                "summary": "Delete a thing",
                "deprecated": True,
                "tags": ["things"],
                "parameters": [
                    {
                        "name": "If-Match",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {"204": {"description": "gone"}},
            },
        },
        "/api/v1/things/{thing_id}/parts/{part_no}": {
            "get": {
                "operationId": "get_thing_part",
                "summary": "Get a part of a thing",
                "tags": ["things"],
                "parameters": [
                    {"name": "thing_id", "in": "path", "required": True, "schema": STRING},
                    {"name": "part_no", "in": "path", "required": True, "schema": INTEGER},
                    {"name": "fresh", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {
                    "200": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Part"}}
                        }
                    }
                },
            },
        },
    },
    "components": {
        "parameters": {
            "IDEMPOTENCY_KEY": {
                "name": "Idempotency-Key",
                "in": "header",
                "schema": {"type": "string"},
            }
        },
        "schemas": {
            "Thing": {
                "type": "object",
                "description": "A thing someone keeps.",
                "required": ["id", "name", "kind", "parts"],
                "properties": {
                    "id": {"type": "string", "readOnly": True},
                    "name": {"type": ["string", "null"], "description": "Its name, if any."},
                    "note": {"type": "string"},
                    "when": {"type": ["string", "null"], "format": "date-time"},
                    "kind": {"type": "string", "enum": ["big", "small"]},
                    "parts": {"type": "array", "items": {"$ref": "#/components/schemas/Part"}},
                    "owner": {"$ref": "#/components/schemas/Part"},
                    "secret": {"type": "string", "writeOnly": True},
                    "extra": {"type": "object", "additionalProperties": {}},
                    "size": {"type": "integer", "default": 1, "description": "Filled in."},
                },
            },
            "Part": {
                "type": "object",
                "required": ["made"],
                "properties": {"made": {"type": "string", "format": "date-time"}},
            },
            "ThingPage": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}},
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
        },
    },
}

CHECK = textwrap.dedent(
    """
    import inspect, typing
    from datetime import datetime
    from mars_sdk import MarsClient, UNSET
    from mars_sdk.models import Part, Thing

    def name(v):
        return v.__qualname__ if isinstance(v, type) else str(v).replace("typing.", "")

    hints = {k: name(v) for k, v in typing.get_type_hints(Thing).items()}
    print(hints)
    thing = Thing.from_json({"id": "t1", "name": None, "kind": "big", "when": None, "size": 1,
                             "parts": [{"made": "2026-01-02T03:04:05Z"}], "unknown": 1})
    assert thing.name is None and thing.note is UNSET and thing.when is None
    assert thing.parts[0].made == datetime.fromisoformat("2026-01-02T03:04:05+00:00")
    assert thing.owner is UNSET and thing.etag is None
    full = Thing.from_json({"id": "t1", "name": "n", "kind": "big", "parts": [], "note": "x",
                            "size": 2, "when": "2026-01-02T03:04:05+00:00",
                            "owner": {"made": "2026-01-01"}})
    assert isinstance(full.when, datetime) and isinstance(full.owner, Part)
    assert Thing.__slots__
    things = MarsClient.things.func(None)
    create = inspect.signature(things.create)
    print({name: str(p.annotation) for name, p in create.parameters.items()})
    part = inspect.signature(type(things).parts.func(things).get)
    print([(name, p.kind.name) for name, p in part.parameters.items()])
    print(inspect.getdoc(things.delete))
    """
)


def test_a_document_becomes_precise_types(tmp_path):
    package = tmp_path / "mars_sdk"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in generated_files(package):
        path.unlink()
    generate(SPEC, package)
    models = (package / "models" / "things.py").read_text()
    assert '"""A thing someone keeps."""' in models
    assert "#: Its name, if any." in models and "secret" not in models
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    hints, create, part, delete_doc = result.stdout.split("\n", 3)
    assert eval(hints) == {
        "id": "str",
        "name": "str | None",
        "note": "str | mars_sdk.types.Unset",
        "when": "datetime.datetime | mars_sdk.types.Unset | None",
        "kind": "Literal['big', 'small']",
        "parts": "list[mars_sdk.models.things.Part]",
        "owner": "mars_sdk.models.things.Part | mars_sdk.types.Unset",
        "extra": "dict[str, Any] | mars_sdk.types.Unset",
        "size": "int",  # a default: the server fills it in, so every response has it
        "etag": "str | None",
    }
    assert eval(create) == {  # keyword-only; no readOnly `id`, no writeOnly in models
        "name": "str | None",
        "kind": "Literal['big', 'small']",
        "parts": "Sequence[Mapping[str, Any]]",
        "note": "str | Unset",
        "when": "datetime | Unset | None",
        "owner": "Mapping[str, Any] | Unset",
        "secret": "str | Unset",
        "extra": "Mapping[str, Any] | Unset",
        "size": "int | Unset",
        "idempotency_key": "str | None",
    }
    # A sub-resource (client.things.parts): what identifies it by position, the rest by name.
    assert eval(part) == [
        ("thing_id", "POSITIONAL_OR_KEYWORD"),
        ("part_no", "POSITIONAL_OR_KEYWORD"),
        ("fresh", "KEYWORD_ONLY"),
    ]
    assert delete_doc.startswith("Delete a thing.")
    assert ".. deprecated::" in delete_doc and "``DELETE /api/v1/things/{thing_id}``" in delete_doc
    resource = (package / "resources" / "things.py").read_text()
    assert "def delete(\n        self,\n        thing_id: str,\n        *," in resource
    assert "if_match: str | HasETag," in resource and "class ThingsPartsResource(" in resource
    assert "-> PageIterator[Thing]:" in resource
    mypy = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(package)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert mypy.returncode == 0, mypy.stdout


def test_what_the_generator_refuses():
    clash = json.loads(json.dumps(SPEC))
    clash["components"]["schemas"]["Part"]["properties"]["etag"] = {"type": "string"}
    with pytest.raises(GeneratorError, match="etag"):
        generate(clash, Path("/nonexistent"))
    bad_tag = json.loads(json.dumps(SPEC))
    bad_tag["paths"]["/api/v1/things"]["get"]["tags"] = ["session"]
    with pytest.raises(GeneratorError, match="session"):
        generate(bad_tag, Path("/nonexistent"))
    twice = json.loads(json.dumps(SPEC))
    twice["paths"]["/api/v1/things"]["get"]["operationId"] = "get_things"
    twice["paths"]["/api/v1/things/{thing_id}"]["get"] = {
        **twice["paths"]["/api/v1/things"]["get"],
        "operationId": "get_thing",
    }
    with pytest.raises(GeneratorError, match="get_thing and get_things would both be"):
        generate(twice, Path("/nonexistent"))
    twice["paths"]["/api/v1/things"]["get"]["x-mars-sdk-method"] = "Not a name"
    with pytest.raises(GeneratorError, match="not a snake_case Python name"):
        generate(twice, Path("/nonexistent"))
    shadow = json.loads(json.dumps(SPEC))
    shadow["paths"]["/api/v1/things"]["get"]["x-mars-sdk-method"] = "parts"
    with pytest.raises(GeneratorError, match="'parts' is also a sub-resource"):
        generate(shadow, Path("/nonexistent"))


def test_one_naming_rule_for_every_operation(app):
    """The SDK's names (docs/plugins.md#how-operations-are-named), from the real document."""
    document = read_document(openapi_document())
    names = {
        op.operation_id: ".".join((op.tag, *op.chain, op.method_name)) for op in document.operations
    }
    assert {
        "create_project": "projects.create",
        "list_projects": "projects.list",
        "get_project": "projects.get",
        "update_project": "projects.update",
        "delete_project": "projects.delete",
        "list_project_members": "projects.members.list",
        "add_project_member": "projects.members.add",
        "remove_project_member": "projects.members.remove",
        "list_tasks": "tasks.list",
        "get_me": "me.get",
        "change_my_password": "me.change_password",
        "revoke_my_token": "me.tokens.revoke",
        "set_my_notification_preference": "notifications.preferences.set",
        "mark_my_notification_read": "notifications.mark_read",
        "rotate_webhook_secret": "webhooks.rotate_secret",
        "redeliver_webhook_delivery": "webhooks.deliveries.redeliver",
        "grant_user_role": "users.roles.grant",
        "list_audit_records": "audit.list",  # x-mars-sdk-method: the rule gives list_records
        "get_operation": "operations.get",
    }.items() <= names.items()
    assert len(set(names.values())) == len(names)
