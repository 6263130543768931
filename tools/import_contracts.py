"""MARS's architecture rules, as import-linter contracts built from the tree.

Every plugin in ``plugins/`` is found by itself (``plugins/*/mars_*/``): adding a first-party
plugin touches no configuration. The rules:

- the core never imports a plugin, and reaches its builtin feature plugins only through hooks;
- plugins import only the public plugin API of ``mars_server`` (docs/plugins.md);
- a plugin's modules are its own: other plugins import only the module its ``PluginInfo``
  declares as ``api`` (``mars_projects.api``), and the builtin feature plugins (auth, audit,
  notifications, webhooks) are imported by nothing else of MARS but the test kit;
- ``mars_sdk`` never imports the server; models never import views.

``python tools/import_contracts.py`` checks them (exit status 1 when one is broken);
``--write FILE`` only writes the configuration.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What a plugin may not import of mars_server: everything but the public plugin API.
CORE_INTERNALS = [
    "mars_server.app",
    "mars_server.config",
    "mars_server.plugins",
    "mars_server.privacy",
    "mars_server.extensions",
    "mars_server.ops",
    "mars_server.scaffold",
    "mars_server.sdkgen",
    "mars_server.http.problems",
    "mars_server.http.requests",
    "mars_server.http.idempotency",
    "mars_server.http.spec",
    "mars_server.auth",
    "mars_server.audit",
    "mars_server.notifications",
    "mars_server.webhooks",
    "mars_server.events.models",
    "mars_server.events.jobs",
    "mars_server.events.relay",
    "mars_server.events.worker",
    "mars_server.events.celery",
    "mars_server.events.services",
    "mars_server.models",
    "mars_server.state",
]
#: The core's modules that must reach the builtin feature plugins through hooks only.
CORE_MODULES = [
    "mars_server.app",
    "mars_server.cache",
    "mars_server.config",
    "mars_server.crypto",
    "mars_server.db",
    "mars_server.events",
    "mars_server.graphql",
    "mars_server.hookspecs",
    "mars_server.http",
    "mars_server.mail",
    "mars_server.ops",
    "mars_server.plugins",
    "mars_server.privacy",
    "mars_server.resources",
    "mars_server.scaffold",
    "mars_server.search",
    "mars_server.state",
]
#: The builtin feature plugins, and what else may import them (the test kit makes users and
#: tokens for plugin authors' tests).
BUILTIN_FEATURES = {
    "mars_server.auth": ["mars_server.testing"],
    "mars_server.audit": [],
    "mars_server.notifications": [],
    "mars_server.webhooks": [],
}


def plugin_packages(root: Path = ROOT) -> list[Path]:
    """The package folders of the first-party plugins (``plugins/projects/mars_projects``)."""
    return sorted(path.parent for path in root.glob("plugins/*/mars_*/__init__.py"))


def declared_api(package: str) -> str | None:
    """The module the plugin's ``PluginInfo(api=...)`` names, if it is installed."""
    for entry in entry_points(group="mars.plugins"):
        if entry.value.split(".")[0].split(":")[0] == package:
            info = getattr(importlib.import_module(entry.module), "MARS_PLUGIN", None)
            return getattr(info, "api", None)
    return None


def _section(key: str, name: str, kind: str, **options: list[str] | str) -> str:
    lines = [f"[importlinter:contract:{key}]", f"name = {name}", f"type = {kind}"]
    for option, value in options.items():
        if isinstance(value, str):
            lines.append(f"{option} = {value}")
        elif value:
            lines += [f"{option} =", *(f"    {item}" for item in value)]
    return "\n".join(lines)


def _private_modules(path: Path, api: str | None) -> list[str]:
    """Every module and subpackage of the plugin's package but its declared API."""
    modules = []
    for child in sorted(path.iterdir()):
        if child.suffix == ".py" and child.stem != "__init__":
            modules.append(f"{path.name}.{child.stem}")
        elif (child / "__init__.py").is_file():
            modules.append(f"{path.name}.{child.name}")
    return [module for module in modules if module != api]


def configuration(root: Path = ROOT, apis: dict[str, str | None] | None = None) -> str:
    """The import-linter configuration for the tree at ``root``; ``apis`` gives plugins'
    declared API modules by package instead of asking the installed plugins."""
    packages = plugin_packages(root)
    names = [path.name for path in packages]
    header = [
        "[importlinter]",
        "root_packages =",
        *(f"    {name}" for name in ["mars_server", "mars_sdk", *names]),
        "include_external_packages = True",
    ]
    sections = ["\n".join(header)]
    sections.append(
        _section(
            "core-never-imports-plugins",
            "mars_server never imports a plugin",
            "forbidden",
            source_modules=["mars_server"],
            forbidden_modules=names,
        )
    )
    if names:
        sections.append(
            _section(
                "plugins-use-public-api",
                "plugins import only the public plugin API of mars_server",
                "forbidden",
                source_modules=names,
                forbidden_modules=CORE_INTERNALS,
                allow_indirect_imports="True",
            )
        )
    sections.append(
        _section(
            "core-never-imports-builtin-plugins",
            "the core reaches the builtin plugins only through hooks",
            "forbidden",
            source_modules=CORE_MODULES,
            forbidden_modules=list(BUILTIN_FEATURES),
        )
    )
    for package, also in BUILTIN_FEATURES.items():
        area = package.rsplit(".", 1)[1]
        sections.append(
            _section(
                f"builtin-{area}-is-its-own",
                f"the builtin plugin {area} is imported by nothing else of MARS",
                "protected",
                protected_modules=[package],
                allowed_importers=[package, *also],
            )
        )
    for path in packages:
        api = apis.get(path.name) if apis is not None else declared_api(path.name)
        sections.append(
            _section(
                f"{path.name}-is-its-own",
                f"other plugins import only {api or 'nothing'} of {path.name}",
                "protected",
                protected_modules=_private_modules(path, api),
                allowed_importers=[path.name],
            )
        )
    sections.append(
        _section(
            "sdk-never-imports-the-server",
            "mars_sdk never imports mars_server or Flask",
            "forbidden",
            source_modules=["mars_sdk"],
            forbidden_modules=["mars_server", *names, "flask", "werkzeug"],
        )
    )
    sections.append(
        _section(
            "models-never-import-views",
            "models never import views",
            "forbidden",
            source_modules=[
                "mars_server.db",
                *(f"{path.name}.models" for path in packages if (path / "models.py").is_file()),
            ],
            forbidden_modules=[
                *(f"{path.name}.views" for path in packages if (path / "views.py").is_file()),
                "mars_server.http",
                "flask_smorest",
            ],
        )
    )
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, help="write the configuration here, check nothing")
    args = parser.parse_args(argv)
    missing = [path for path in plugin_packages() if find_spec(path.name) is None]
    if missing and not args.write:
        for path in missing:
            folder = path.parent.relative_to(ROOT)
            print(f"{path.name} is not installed here: pip install -e {folder} (tox installs them)")
        return 1
    text = configuration()
    if args.write:
        args.write.write_text(text)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder, "importlinter.ini")
        config.write_text(text)
        lint = Path(sys.executable).parent / "lint-imports"
        command = [str(lint), str(config), "--no-cache"]
        return subprocess.run(command, cwd=ROOT, check=False).returncode  # noqa: S603


if __name__ == "__main__":
    sys.exit(main())
