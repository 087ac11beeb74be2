"""``flask --app wsgi hub entitlements …``: which products a tenant owns."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.extensions import resources
from app.tenants.cli import commit_onboarding, product_by_code, tenant_by_slug

entitlements_cli = AppGroup("entitlements", help="Which products a tenant owns.")


@entitlements_cli.command("grant")
@click.argument("tenant_slug")
@click.argument("product_code")
def grant(tenant_slug: str, product_code: str) -> None:
    """Entitle a tenant to a product."""
    from app.entitlements.service import grant_entitlement

    grant_entitlement(db_session=resources().database.session, tenant=tenant_by_slug(tenant_slug),
                      product=product_by_code(product_code))
    commit_onboarding()
    click.echo(f"{tenant_slug} is entitled to {product_code}")


@entitlements_cli.command("revoke")
@click.argument("tenant_slug")
@click.argument("product_code")
def revoke(tenant_slug: str, product_code: str) -> None:
    """Revoke a tenant's entitlement to a product (effective within seconds)."""
    from app.entitlements.service import revoke_entitlement

    if not revoke_entitlement(db_session=resources().database.session,
                              tenant=tenant_by_slug(tenant_slug),
                              product=product_by_code(product_code)):
        raise click.ClickException(f"{tenant_slug} has no entitlement to {product_code}")
    commit_onboarding()
    click.echo(f"{tenant_slug} is no longer entitled to {product_code}")
