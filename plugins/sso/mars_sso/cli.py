"""``mars sso``: what an operator tells the identity providers' operators."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from mars_sso import saml, services


@click.group("sso")
def sso() -> None:
    """Single sign-on: the identity providers MARS signs people in with."""


@sso.command("providers")
@with_appcontext
def providers() -> None:
    """List the providers, and what to register at each (the redirect URI, SAML metadata)."""
    found = services.providers()
    if not found:
        click.echo("no identity providers (set [plugins.sso] providers: docs/sso.md)")
    for provider in found:
        domains = ", ".join(provider["domains"]) or "-"
        click.echo(
            f"{provider['name']}\t{provider['kind']}\t{provider['label']}\tdomains: {domains}"
        )
        if provider["kind"] == "oidc":
            click.echo(f"  redirect URI: {services.callback_url(provider)}")
        else:
            click.echo(f"  entity ID and metadata: {saml.entity_id(provider)}")
            click.echo(f"  assertion consumer service: {saml.acs_url(provider)}")


@sso.command("metadata")
@click.argument("name")
@with_appcontext
def metadata(name: str) -> None:
    """Print MARS's SAML service provider metadata for provider NAME."""
    provider = next((p for p in services.providers() if p["name"] == name), None)
    if provider is None or provider["kind"] != "saml":
        raise click.ClickException(f"no SAML provider is called {name!r} (mars sso providers)")
    try:
        click.echo(saml.metadata(provider))
    except services.ProviderError as error:
        raise click.ClickException(str(error)) from None
