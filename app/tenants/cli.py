"""``flask --app wsgi hub tenants …`` and ``hub connections …``: onboard hospital customers and
connect them to their systems."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from app.extensions import resources
from app.tenants.models import Product, Tenant

tenants_cli = AppGroup("tenants", help="Tenants (hospital customers).")
connections_cli = AppGroup("connections", help="A tenant's connections to its systems.")
connectors_cli = AppGroup("connectors", help="The registered connectors (kinds of system).")


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
@click.option("--connector", default=None, metavar="NAME",
              help="A registered connector (`hub connectors list`); default: the hub's own "
                   "connector of the product.")
@click.option("--base-url", default="", help="Where the system answers (systems the hub pulls "
                                             "from over HTTP).")
@click.option("--credential-ref", default="none",
              help="file:PATH (relative to the secrets folder) or env:VARIABLE; `none` for a "
                   "system that pushes to the hub.")
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--unit-code", "unit_codes", multiple=True, metavar="NATIVE=CANONICAL",
              help="Map a native unit code that does not follow the usual pattern.")
@click.option("--options", "options_json", default=None, metavar="JSON",
              help="The connector's own options as a JSON object (checked against its "
                   "options schema), e.g. the senders of an HL7 v2 system.")
@click.option("--sender", "senders", multiple=True, nargs=2, metavar="APPLICATION FACILITY",
              help="An HL7 sender of this tenant, as MSH-3 and MSH-4 name it (pharmacy; "
                   "short for the `senders` option).")
def set_connection(tenant_slug: str, product_code: str, connector: str | None, base_url: str,
                   credential_ref: str, timezone: str, unit_codes: tuple[str, ...],
                   options_json: str | None, senders: tuple[tuple[str, str], ...]) -> None:
    """Create or update a tenant's connection to its instance of a product."""
    from app.connectors.registry import InvalidConnectionOptions, UnknownConnector
    from app.pharmacy.service import PRODUCT as PHARMACY
    from app.pharmacy.service import check_sender_claims
    from app.problems import Problem
    from app.tenants.service import ConnectorMismatch, ensure_connection

    if credential_ref != "none" and not credential_ref.startswith(("file:", "env:")):
        raise click.BadParameter("must start with file: or env:, or be none",
                                 param_hint="--credential-ref")
    try:
        options = json.loads(options_json) if options_json else {}
    except json.JSONDecodeError:
        raise click.BadParameter("must be a JSON object", param_hint="--options") from None
    if not isinstance(options, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--options")
    code_map = dict(options.get("unit_codes") or {})
    for pair in unit_codes:
        native, sep, canonical = pair.partition("=")
        if not sep or not native or not canonical:
            raise click.BadParameter("must be NATIVE=CANONICAL", param_hint="--unit-code")
        code_map[native] = canonical
    if code_map:
        options["unit_codes"] = code_map
    if senders:
        options["senders"] = [{"application": application, "facility": facility}
                              for application, facility in senders]
    tenant = tenant_by_slug(tenant_slug)
    session = resources().database.session
    try:
        connection = ensure_connection(
            db_session=session, tenant=tenant, product=product_by_code(product_code),
            base_url=base_url, credential_ref=credential_ref, timezone=timezone,
            options=options, connector=connector)
        if product_code == PHARMACY:
            # A sender belongs to one tenant: refuse one another tenant already claims.
            check_sender_claims(db_session=session, tenant_id=tenant.id,
                                options=connection.options)
    except (UnknownConnector, InvalidConnectionOptions, Problem, ConnectorMismatch,
            ValueError) as refused:
        session.rollback()  # nothing of a refused connection stays behind
        _refuse_connection(refused, connector)
    commit_onboarding()
    click.echo(f"connection {tenant_slug} → {product_code} "
               f"({connection.connector or 'built-in connector'}) at {connection.base_url or '-'}")


def _refuse_connection(refused: Exception, connector: str | None) -> None:
    """Stop the command saying why the connection was refused."""
    from app.connectors.registry import InvalidConnectionOptions, UnknownConnector
    from app.problems import Problem

    if isinstance(refused, UnknownConnector):
        raise click.BadParameter(f"no connector {connector} is installed (see `hub connectors "
                                 "list`)", param_hint="--connector")
    if isinstance(refused, InvalidConnectionOptions):
        raise click.BadParameter(json.dumps(refused.messages, sort_keys=True),
                                 param_hint="--options")
    if isinstance(refused, Problem):
        raise click.ClickException(refused.detail)
    raise click.ClickException(str(refused))


@connectors_cli.command("list")
def list_connectors() -> None:
    """List the registered connectors: built in, and installed as plug-ins."""
    from app.connectors.registry import registered

    for connector in registered().values():
        click.echo(f"{connector.name:20} product={connector.product:16} "
                   f"transport={connector.transport:12} source={connector.source}")
        click.echo(f"{'':20} capabilities: {', '.join(sorted(connector.capabilities)) or '-'}")
        click.echo(f"{'':20} events: {', '.join(connector.events) or '-'}")


@connectors_cli.command("health")
@click.argument("tenant_slug")
def connection_health(tenant_slug: str) -> None:
    """Run the health check of each of a tenant's connections (exit 1 if one fails)."""
    from app.connectors.routing import connection_health as check

    tenant = tenant_by_slug(tenant_slug)
    results = check(db_session=resources().database.session, settings=resources().settings,
                    tenant=tenant)
    for result in results:
        click.echo(f"{result.product:16} {result.connector:20} "
                   f"{'ok' if result.ok else 'FAILING ' + (result.error or '')}")
    if not all(result.ok for result in results):
        raise SystemExit(1)
