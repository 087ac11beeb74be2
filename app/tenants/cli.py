"""``flask --app wsgi hub tenants …`` and ``hub connections …``: onboard hospital customers and
connect them to their systems."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.extensions import resources
from app.tenants.models import Product, Tenant

tenants_cli = AppGroup("tenants", help="Tenants (hospital customers).")
connections_cli = AppGroup("connections", help="A tenant's connections to its systems.")


def tenant_by_slug(slug: str) -> Tenant:
    """Return the tenant called ``slug``, or stop the command saying there is none."""
    from app.tenants.service import get_tenant_by_slug

    tenant = get_tenant_by_slug(db_session=resources().database.session, slug=slug)
    if tenant is None:
        raise click.ClickException(f"no tenant {slug}")
    return tenant


def product_by_code(code: str | None) -> Product | None:
    """Return the product ``code`` (None for None), or stop the command saying there is none."""
    from app.tenants.service import UnknownProduct, get_product

    if code is None:
        return None
    try:
        return get_product(db_session=resources().database.session, code=code)
    except UnknownProduct:
        raise click.ClickException(f"no product {code}") from None


def commit_onboarding() -> None:
    """Commit an onboarding change and drop this process's cached entitlements, so the change
    shows at once."""
    from app.entitlements.service import forget_entitlements

    resources().database.session.commit()
    forget_entitlements()


@tenants_cli.command("create")
@click.argument("slug")
@click.option("--name", required=True)
def create_tenant(slug: str, name: str) -> None:
    """Create (or rename) a tenant."""
    from app.tenants.service import ensure_tenant

    tenant = ensure_tenant(db_session=resources().database.session, slug=slug, name=name)
    commit_onboarding()
    click.echo(f"tenant {tenant.slug} ({tenant.id})")


@tenants_cli.command("list")
def list_tenants() -> None:
    """List tenants with their entitlements and connections."""
    from app.tenants.service import list_tenants as all_tenants

    for tenant in all_tenants(db_session=resources().database.session):
        connected = ", ".join(sorted(c.product.code for c in tenant.connections if c.is_active))
        click.echo(f"{tenant.slug:24} {tenant.name:32} connections: {connected or '-'}")


@connections_cli.command("set")
@click.argument("tenant_slug")
@click.argument("product_code")
@click.option("--base-url", required=True)
@click.option("--credential-ref", required=True,
              help="file:PATH (relative to the secrets folder) or env:VARIABLE.")
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--unit-code", "unit_codes", multiple=True, metavar="NATIVE=CANONICAL",
              help="Map a native unit code that does not follow the usual pattern.")
@click.option("--sender", "senders", multiple=True, nargs=2, metavar="APPLICATION FACILITY",
              help="pharmacy only: an HL7 sender of this tenant, as MSH-3 and MSH-4 name it.")
def set_connection(tenant_slug: str, product_code: str, base_url: str, credential_ref: str,
                   timezone: str, unit_codes: tuple[str, ...],
                   senders: tuple[tuple[str, str], ...]) -> None:
    """Create or update a tenant's connection to its instance of a product."""
    from marshmallow import ValidationError

    from app.pharmacy.service import PRODUCT as PHARMACY
    from app.pharmacy.service import check_sender_claims
    from app.problems import Problem
    from app.tenants.service import ensure_connection

    if not credential_ref.startswith(("file:", "env:")):
        raise click.BadParameter("must start with file: or env:", param_hint="--credential-ref")
    code_map = {}
    for pair in unit_codes:
        native, sep, canonical = pair.partition("=")
        if not sep or not native or not canonical:
            raise click.BadParameter("must be NATIVE=CANONICAL", param_hint="--unit-code")
        code_map[native] = canonical
    options: dict = {"unit_codes": code_map} if code_map else {}
    tenant = tenant_by_slug(tenant_slug)
    if product_code == PHARMACY:
        options["senders"] = [{"application": application, "facility": facility}
                              for application, facility in senders]
        try:
            check_sender_claims(db_session=resources().database.session, tenant_id=tenant.id,
                                options=options)
        except ValidationError as invalid:
            raise click.BadParameter(str(invalid.messages), param_hint="--sender") from None
        except Problem as claimed:
            raise click.ClickException(claimed.detail) from None
    elif senders:
        raise click.BadParameter("only a pharmacy connection has HL7 senders",
                                 param_hint="--sender")
    connection = ensure_connection(
        db_session=resources().database.session, tenant=tenant,
        product=product_by_code(product_code), base_url=base_url, credential_ref=credential_ref,
        timezone=timezone, options=options)
    commit_onboarding()
    click.echo(f"connection {tenant_slug} → {product_code} at {connection.base_url}")
