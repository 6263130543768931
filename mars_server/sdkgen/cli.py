"""``mars sdk generate``: regenerate ``mars_sdk`` from this MARS and its enabled plugins."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

from mars_server.sdkgen import GeneratorError, generate

DEFAULT_OUT = Path("mars_sdk", "src", "mars_sdk")
#: A file of the hand-written runtime: its presence says a folder is the SDK's package.
RUNTIME_MARKER = "_client.py"

sdk = AppGroup("sdk", help="The Python SDK (mars_sdk), generated from the OpenAPI document.")


@sdk.command("generate")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="The mars_sdk package folder to write the generated modules into.",
)
def generate_command(out: Path) -> None:
    """Write mars_sdk's models, resources and client for the enabled plugins' API."""
    from mars_server.ops.commands import openapi_document

    if not (out / RUNTIME_MARKER).is_file():
        raise click.ClickException(
            f"{out} is not the mars_sdk package (no {RUNTIME_MARKER}); pass --out "
            "mars_sdk/src/mars_sdk from a checkout of MARS"
        )
    try:
        written = generate(openapi_document(), out)
    except GeneratorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {len(written)} files to {out}")
