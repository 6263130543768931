"""Every feature area has the same shape: views and pages take the arguments in, call a
service and answer; the service owns the transaction (it commits, or its caller's unit of
work does) and never reads the request. Read from the source with :mod:`ast`, for the
core's areas and every plugin in ``plugins/``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the packages whose areas are checked: the core and every first-party plugin
PACKAGES = [ROOT / "mars_server", *sorted(ROOT.glob("plugins/*/mars_*"))]
#: modules that handle requests: ``views.py``, ``oauth_views.py``, ``account_pages.py``...
REQUEST_MODULES = ("views.py", "*_views.py", "*pages.py")
#: what only a unit of work does: a view that calls one decides when its change is kept
TRANSACTION_CALLS = frozenset({"commit", "rollback"})


def modules(*patterns: str) -> list[Path]:
    found = {
        path
        for package in PACKAGES
        for pattern in patterns
        for path in package.rglob(pattern)
        if "migrations" not in path.parts
    }
    return sorted(found)


class _Scanner(ast.NodeVisitor):
    """Where a module commits or rolls back: ``(function, line)`` pairs, the function as
    ``Class.method`` (``<module>`` at the top level)."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.found: list[tuple[str, int]] = []

    def _enter(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _enter

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # Called or handed on (``callback=db.session.commit``): either commits from here.
        if node.attr in TRANSACTION_CALLS:
            self.found.append((".".join(self.scope) or "<module>", node.lineno))
        self.generic_visit(node)


def transaction_calls(source: str) -> list[tuple[str, int]]:
    scanner = _Scanner()
    scanner.visit(ast.parse(source))
    return scanner.found


def test_the_scanner_finds_a_commit_wherever_it_is():
    source = (
        "from mars_server.db import db\n"
        "class Things:\n"
        "    def post(self):\n"
        "        db.session.commit()\n"
        "def page():\n"
        "    try:\n"
        "        pass\n"
        "    except ValueError:\n"
        "        session = db.session\n"
        "        session.rollback()\n"
        "    return after(db.session.commit)\n"
    )
    assert transaction_calls(source) == [("Things.post", 4), ("page", 10), ("page", 11)]
    assert transaction_calls("def get(self):\n    return services.get_thing(1)\n") == []


def test_request_modules_are_found_in_every_area():
    found = {path.relative_to(ROOT).as_posix() for path in modules(*REQUEST_MODULES)}
    assert {
        "mars_server/auth/views.py",
        "mars_server/auth/oauth_views.py",
        "mars_server/auth/account_pages.py",
        "mars_server/events/views.py",
        "mars_server/webhooks/views.py",
        "plugins/projects/mars_projects/views.py",
    } <= found


def test_views_and_pages_never_commit_or_roll_back():
    """The service called commits (or its caller's unit of work does); a refused change
    raises before anything is kept, and the request's end discards what it left."""
    offenders = [
        f"{path.relative_to(ROOT).as_posix()}:{line} {function}"
        for path in modules(*REQUEST_MODULES)
        for function, line in transaction_calls(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "views and pages leave the transaction to services:\n" + "\n".join(
        offenders
    )


def _reads_request_globals(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "flask":
            if any(alias.name in ("request", "g") for alias in node.names):
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in ("request", "g")
            and isinstance(node.value, ast.Name)
            and node.value.id == "flask"
        ):
            lines.append(node.lineno)
    return lines


def test_services_never_read_the_request():
    """A service is called alike from a view, a command, a job or a test."""
    services = modules("services.py")
    assert any(path.parent.name == "events" for path in services)
    offenders = [
        f"{path.relative_to(ROOT).as_posix()}:{line}"
        for path in services
        for line in _reads_request_globals(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert offenders == []
    assert _reads_request_globals(ast.parse("from flask import current_app, g\n")) == [1]
    assert _reads_request_globals(ast.parse("import flask\nflask.request.args\n")) == [2]
