"""``flask --app wsgi hub clients …``: machine clients of a tenant and their secrets."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.extensions import resources
from app.tenants.cli import commit_onboarding, product_by_code, tenant_by_slug

clients_cli = AppGroup("clients", help="Machine clients and their secrets.")


@clients_cli.command("create")
@click.argument("tenant_slug")
@click.argument("client_id")
@click.option("--product", "product_code", help="The system this client is; omit for an "
              "operator client.")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="Repeat for each scope, e.g. --scope inventory:read.")
def create_client(tenant_slug: str, client_id: str, product_code: str | None,
                  scopes: tuple[str, ...]) -> None:
    """Create a client and print its secret once (only its hash is kept)."""
    from app.auth.service import KNOWN_SCOPES
    from app.clients.service import create_client as create

    unknown = set(scopes) - KNOWN_SCOPES
    if unknown:
        raise click.BadParameter(f"unknown scopes {sorted(unknown)}; known: "
                                 f"{sorted(KNOWN_SCOPES)}", param_hint="--scope")
    try:
        client, secret = create(db_session=resources().database.session, client_id=client_id,
                                tenant=tenant_by_slug(tenant_slug),
                                product=product_by_code(product_code), scopes=list(scopes))
    except ValueError as exists:
        raise click.ClickException(str(exists)) from None
    commit_onboarding()
    click.echo(f"client_id:     {client.client_id}\nclient_secret: {secret}\n"
               "(the secret is shown once; store it now)")


def _existing_client(client_id: str):
    from app.clients.service import get_client

    client = get_client(db_session=resources().database.session, client_id=client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id}")
    return client


@clients_cli.command("rotate-secret")
@click.argument("client_id")
def rotate_client_secret(client_id: str) -> None:
    """Give a client a new secret; the old one stops working at once."""
    from app.clients.service import rotate_secret

    secret = rotate_secret(db_session=resources().database.session,
                           client=_existing_client(client_id))
    commit_onboarding()
    click.echo(f"client_secret: {secret}\n(the secret is shown once; store it now)")


@clients_cli.command("disable")
@click.argument("client_id")
def disable_client(client_id: str) -> None:
    """Disable a client: no new tokens, issued ones refused within HUB_CLIENT_STATE_SECONDS."""
    from app.clients.service import disable_client as disable

    disable(db_session=resources().database.session, client=_existing_client(client_id))
    commit_onboarding()
    click.echo(f"client {client_id} disabled")
