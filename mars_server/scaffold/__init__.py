"""``mars plugin new``: write a working plugin from the Jinja templates in ``templates/``.

The templates mirror the plugin's files. In their paths, ``__package__`` becomes the
package's name (``mars_tasks``), ``__name__`` the plugin's (``tasks``) and ``__migration__``
the first migration's file name; ``.j2`` is dropped. The written code is then formatted with
ruff, as the SDK's is, so whatever the names' lengths, it passes ``ruff format --check``.
"""

from __future__ import annotations

import datetime as dt
import keyword
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path

import jinja2
from alembic.script import ScriptDirectory

from mars_server import __version__
from mars_server.plugins import ENTRY_POINT_GROUP, builtin_names

TEMPLATES = Path(__file__).parent / "templates" / "plugin"
CORE_VERSIONS = Path(__file__).parent.parent / "migrations" / "versions"
#: A plugin's name: also its URL path, its scopes' prefix and its package's suffix.
NAME = re.compile(r"^[a-z][a-z0-9_]{1,29}$")
#: Names a new plugin may not take: MARS's own areas and what their URLs and commands use.
RESERVED = frozenset(
    {"api", "docs", "meta", "me", "oauth", "accounts", "metrics", "openapi", "sdk", "db"}
)
#: Id prefixes MARS's own records use; a new plugin's ids get another one.
TAKEN_PREFIXES = frozenset(
    {"app", "aud", "dlv", "evt", "fam", "job", "msg", "ntf", "pat", "prj", "tok", "usr", "whk"}
)


class ScaffoldError(ValueError):
    """The plugin cannot be written as asked; the message says why, in one line."""


@dataclass(frozen=True)
class PluginNames:
    """Every name the templates use, derived from the plugin's name and its resource's."""

    name: str  # tasks: the plugin, its URL path (/api/v1/tasks), its scopes (tasks:read)
    package: str  # mars_tasks
    distribution: str  # mars-tasks
    resource: str  # task: events (task.created), operation ids (get_task)
    model: str  # Task
    title: str  # Tasks
    table: str  # tasks
    id_prefix: str  # tsk
    core_requires: str  # >=0.1,<0.2
    core_head: str  # the core's newest revision: the plugin's branch depends on it
    date: str  # 2026-12-07
    migration: str  # 20261207_tasks_0001_create_tasks
    graphql_list: str  # tasks: the GraphQL query field of the list
    graphql_one: str  # task: the GraphQL query field of one, by id


def _singular(name: str) -> str:
    if name.endswith("ies") and len(name) > 4:
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss") and len(name) > 3:
        return name[:-1]
    return f"{name}_item"


def _id_prefix(resource: str) -> str:
    """Three letters: the first, then consonants (``task`` → ``tsk``), never MARS's own."""
    letters = resource.replace("_", "")
    consonants = [c for c in letters[1:] if c not in "aeiou"]
    candidates = [letters[0] + "".join(consonants[:2]), letters[:3], letters[0] + letters[-2:]]
    for candidate in candidates:
        if len(candidate) == 3 and candidate not in TAKEN_PREFIXES:
            return candidate
    return f"{letters[0]}xx"


def _core_head() -> str:
    script = ScriptDirectory(str(CORE_VERSIONS.parent), version_locations=[str(CORE_VERSIONS)])
    heads = script.get_heads()
    if len(heads) != 1:  # pragma: no cover - the core's own migrations have one head
        raise ScaffoldError(f"the core's migrations have {len(heads)} heads")
    return heads[0]


def _installed_plugin_names() -> set[str]:
    return builtin_names() | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


def plugin_names(
    name: str, resource: str | None = None, today: dt.date | None = None
) -> PluginNames:
    """Check ``name`` (and ``resource``) and derive every other name from them."""
    if not NAME.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"{name!r} is not a plugin name: use 2-30 lower-case letters, digits and "
            "underscores, starting with a letter"
        )
    if name in RESERVED:
        raise ScaffoldError(f"{name!r} is a name MARS uses itself; choose another")
    if name in _installed_plugin_names():
        raise ScaffoldError(f"a plugin named {name!r} is installed already")
    resource = resource or _singular(name)
    if not NAME.match(resource) or keyword.iskeyword(resource):
        raise ScaffoldError(
            f"{resource!r} is not a resource name: use lower-case letters, digits and "
            "underscores, starting with a letter"
        )
    major, minor = (int(part) for part in __version__.split(".")[:2])
    day = today or dt.date.today()
    table = f"{resource}s" if resource != name else f"{resource}_items"
    return PluginNames(
        name=name,
        package=f"mars_{name}",
        distribution=f"mars-{name.replace('_', '-')}",
        resource=resource,
        model="".join(part.title() for part in resource.split("_")),
        title=name.replace("_", " ").capitalize(),
        table=table,
        id_prefix=_id_prefix(resource),
        core_requires=f">={major}.{minor},<{major}.{minor + 1}",
        core_head=_core_head(),
        date=day.isoformat(),
        migration=f"{day:%Y%m%d}_{name}_0001_create_{table}",
        graphql_list=_lower_camel(name),
        graphql_one=_lower_camel(resource) + ("Item" if resource == name else ""),
    )


def _lower_camel(snake: str) -> str:
    first, *rest = snake.split("_")
    return first + "".join(part.title() for part in rest)


def _target(relative: Path, names: PluginNames) -> Path:
    parts = [
        part.replace("__package__", names.package)
        .replace("__migration__", names.migration)
        .replace("__name__", names.name)
        .removesuffix(".j2")
        for part in relative.parts
    ]
    return Path(*parts)


def write_plugin(names: PluginNames, folder: Path) -> list[Path]:
    """Render every template into ``folder`` (which must not exist, or be empty); return the
    files written."""
    if folder.exists() and any(folder.iterdir()):
        raise ScaffoldError(f"{folder} exists and is not empty")
    environment = jinja2.Environment(  # noqa: S701 - Python and Markdown, never HTML
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    written: list[Path] = []
    for template in sorted(TEMPLATES.rglob("*.j2")):
        relative = template.relative_to(TEMPLATES)
        path = folder / _target(relative, names)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = environment.get_template(relative.as_posix()).render(**asdict(names))
        path.write_text(text, encoding="utf-8")
        written.append(path)
    _tidy([path for path in written if path.suffix == ".py"], names.package)
    return written


def _tidy(paths: list[Path], package: str) -> None:
    """Sort the imports (the plugin's package and MARS's are first-party) and format, as
    ruff would with MARS's settings."""
    from mars_server.sdkgen.render import LINE_LENGTH, format_sources

    command = [sys.executable, "-m", "ruff", "check", "--isolated", "--quiet", "--fix"]
    command += ["--select=I", f"--line-length={LINE_LENGTH}", "--target-version=py311"]
    command += [f"--config=lint.isort.known-first-party=['{package}', 'mars_server']"]
    try:
        subprocess.run([*command, *map(str, paths)], check=True, capture_output=True, timeout=120)  # noqa: S603
    except subprocess.CalledProcessError as exc:
        raise ScaffoldError(f"ruff could not sort the imports: {exc.stdout}{exc.stderr}") from exc
    format_sources(paths)
