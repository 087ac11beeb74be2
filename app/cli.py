"""``flask --app wsgi hub …``: operator commands of the hub."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import AppGroup

from app.audit.cli import audit_cli
from app.database import upgrade_schema
from app.extensions import resources
from app.settings import settings_table

hub_cli = AppGroup("hub", help="Operate the medication hub.")
hub_cli.add_command(audit_cli)


@hub_cli.command("migrate")
@click.option("--revision", default="head", show_default=True)
def migrate(revision: str) -> None:
    """Apply database migrations."""
    upgrade_schema(resources().settings.database_url, revision)
    click.echo(f"database migrated to {revision}")


@hub_cli.command("seed-demo")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="manifest.json written by `python -m demo_systems seed`.")
@click.option("--inventory-url", required=True, help="Base URL of the demo inventory system.")
@click.option("--administration-url", required=True,
              help="Base URL of the demo administration system.")
def seed_demo(manifest: Path, inventory_url: str, administration_url: str) -> None:
    """Onboard the demo sites as tenants with connections, entitlements and clients."""
    from app.demo_tenants import onboard_demo_sites

    hub = resources()
    credentials = onboard_demo_sites(
        db_session=hub.database.session, manifest_path=manifest,
        system_urls={"inventory": inventory_url, "administration": administration_url},
        secrets_dir=hub.settings.hub_secrets_dir)
    tenants = sorted({credential.tenant for credential in credentials})
    click.echo(f"onboarded {len(tenants)} demo tenants with {len(credentials)} clients")


tenants_cli = AppGroup("tenants", help="Tenants (hospital customers).")
connections_cli = AppGroup("connections", help="A tenant's connections to its systems.")
clients_cli = AppGroup("clients", help="Machine clients and their secrets.")
entitlements_cli = AppGroup("entitlements", help="Which products a tenant owns.")
for _group in (tenants_cli, connections_cli, clients_cli, entitlements_cli):
    hub_cli.add_command(_group)


def _tenant(slug: str):
    from app.tenants.service import get_tenant_by_slug

    tenant = get_tenant_by_slug(db_session=resources().database.session, slug=slug)
    if tenant is None:
        raise click.ClickException(f"no tenant {slug}")
    return tenant


def _product(code: str | None):
    from app.tenants.service import UnknownProduct, get_product

    if code is None:
        return None
    try:
        return get_product(db_session=resources().database.session, code=code)
    except UnknownProduct:
        raise click.ClickException(f"no product {code}") from None


def _commit() -> None:
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
    _commit()
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
def set_connection(tenant_slug: str, product_code: str, base_url: str, credential_ref: str,
                   timezone: str, unit_codes: tuple[str, ...]) -> None:
    """Create or update a tenant's connection to its instance of a product."""
    from app.tenants.service import ensure_connection

    if not credential_ref.startswith(("file:", "env:")):
        raise click.BadParameter("must start with file: or env:", param_hint="--credential-ref")
    code_map = {}
    for pair in unit_codes:
        native, sep, canonical = pair.partition("=")
        if not sep or not native or not canonical:
            raise click.BadParameter("must be NATIVE=CANONICAL", param_hint="--unit-code")
        code_map[native] = canonical
    connection = ensure_connection(
        db_session=resources().database.session, tenant=_tenant(tenant_slug),
        product=_product(product_code), base_url=base_url, credential_ref=credential_ref,
        timezone=timezone, options={"unit_codes": code_map} if code_map else {})
    _commit()
    click.echo(f"connection {tenant_slug} → {product_code} at {connection.base_url}")


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
                                tenant=_tenant(tenant_slug), product=_product(product_code),
                                scopes=list(scopes))
    except ValueError as exists:
        raise click.ClickException(str(exists)) from None
    _commit()
    click.echo(f"client_id:     {client.client_id}\nclient_secret: {secret}\n"
               "(the secret is shown once; store it now)")


@clients_cli.command("rotate-secret")
@click.argument("client_id")
def rotate_client_secret(client_id: str) -> None:
    """Give a client a new secret; the old one stops working at once."""
    from app.clients.service import get_client, rotate_secret

    client = get_client(db_session=resources().database.session, client_id=client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id}")
    secret = rotate_secret(db_session=resources().database.session, client=client)
    _commit()
    click.echo(f"client_secret: {secret}\n(the secret is shown once; store it now)")


@clients_cli.command("disable")
@click.argument("client_id")
def disable_client(client_id: str) -> None:
    """Stop a client from getting new tokens (issued tokens expire within HUB_TOKEN_TTL)."""
    from app.clients.service import get_client

    client = get_client(db_session=resources().database.session, client_id=client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id}")
    client.is_active = False
    _commit()
    click.echo(f"client {client_id} disabled")


@entitlements_cli.command("grant")
@click.argument("tenant_slug")
@click.argument("product_code")
def grant(tenant_slug: str, product_code: str) -> None:
    """Entitle a tenant to a product."""
    from app.entitlements.service import grant_entitlement

    grant_entitlement(db_session=resources().database.session, tenant=_tenant(tenant_slug),
                      product=_product(product_code))
    _commit()
    click.echo(f"{tenant_slug} is entitled to {product_code}")


@entitlements_cli.command("revoke")
@click.argument("tenant_slug")
@click.argument("product_code")
def revoke(tenant_slug: str, product_code: str) -> None:
    """Revoke a tenant's entitlement to a product (effective within seconds)."""
    from app.entitlements.service import revoke_entitlement

    if not revoke_entitlement(db_session=resources().database.session,
                              tenant=_tenant(tenant_slug), product=_product(product_code)):
        raise click.ClickException(f"{tenant_slug} has no entitlement to {product_code}")
    _commit()
    click.echo(f"{tenant_slug} is no longer entitled to {product_code}")


@hub_cli.command("settings")
def show_settings() -> None:
    """Print the effective settings (secrets and passwords hidden)."""
    click.echo(json.dumps(resources().settings.redacted(), indent=2))


@hub_cli.command("settings-table")
def print_settings_table() -> None:
    """Print the Markdown table of every setting (the README's table)."""
    click.echo(settings_table())


@hub_cli.command("smoke")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait.")
def smoke(timeout: float) -> None:
    """Run the smoke chain (io → compute) and chord (io fan-out → compute) on the workers."""
    from app.jobs.dispatch import submit_smoke_chain, submit_smoke_chord

    chained = submit_smoke_chain(21).get(timeout=timeout)
    chorded = submit_smoke_chord(10).get(timeout=timeout)
    click.echo(json.dumps({"chain": chained, "chord": chorded}))
    if chained["value"] != 42 or chorded["total"] != sum(n * n for n in range(10)):
        raise click.ClickException("smoke pipeline returned wrong figures")


dead_letters_cli = AppGroup("dead-letters", help="Units of jobs that exhausted their retries.")
hub_cli.add_command(dead_letters_cli)


@dead_letters_cli.command("list")
@click.option("--tenant", "tenant_slug", help="Only this tenant's dead letters.")
@click.option("--all", "show_all", is_flag=True, help="Replayed ones too.")
def list_dead_letters(tenant_slug: str | None, show_all: bool) -> None:
    """List dead letters: task, job, tenant, unit, attempts, PHI-free error."""
    from app.jobs.service import list_dead_letters as dead_letters

    tenant_id = str(_tenant(tenant_slug).id) if tenant_slug else None
    letters = dead_letters(db_session=resources().database.session, tenant_id=tenant_id,
                           status=None if show_all else "open")
    for letter in letters:
        click.echo(f"{letter.id}  {letter.status:8} job {letter.job_id}  unit {letter.unit or '-':10} "
                   f"attempts {letter.attempts}  {letter.task_name}  {letter.error}")
    if not letters:
        click.echo("no dead letters")


@dead_letters_cli.command("replay")
@click.argument("dead_letter_id")
def replay_dead_letter(dead_letter_id: str) -> None:
    """Run a dead-lettered unit again; its job finishes once its last unit succeeds."""
    from app.jobs.service import replay_dead_letter
    from app.problems import Problem

    try:
        letter = replay_dead_letter(db_session=resources().database.session, tenant_id=None,
                                    dead_letter_id=dead_letter_id)
    except Problem as problem:
        raise click.ClickException(problem.detail) from None
    click.echo(f"replaying unit {letter.unit} of job {letter.job_id}")


syncs_cli = AppGroup("syncs", help="Scheduled syncs: list, change, switch off, run now.")
hub_cli.add_command(syncs_cli)


def _sync_id(kind: str, owner: str) -> str:
    from app.syncs.service import SyncProblem, sync_id_for

    try:
        return sync_id_for(db_session=resources().database.session, kind=kind, owner=owner)
    except SyncProblem as problem:
        raise click.ClickException(problem.detail) from None


@syncs_cli.command("list")
@click.option("--tenant", "tenant_slug", help="Only this tenant's syncs (and the hub-wide).")
def list_syncs(tenant_slug: str | None) -> None:
    """Every sync: schedule, status, last run, next due time, failures and skips."""
    from app.syncs.service import list_syncs as syncs

    tenant_id = str(_tenant(tenant_slug).id) if tenant_slug else None
    for view in syncs(hub=resources(), tenant_id=tenant_id):
        last = view["last_run"] or {}
        click.echo(
            f"{view['sync']:20} {view['tenant'] or 'hub':18} "
            f"{view['schedule']['spec'] + ('*' if view['schedule']['customized'] else ''):14} "
            f"{view['status']:10} last {last.get('outcome', '-'):9} "
            f"{last.get('started_at') or '-':27} {last.get('duration_seconds') or 0:8.2f}s  "
            f"next {view['next_due_at'] or '-':27} failures {view['consecutive_failures']} "
            f"skipped {view['skipped_runs']}")
        if last.get("error"):
            click.echo(f"{'':40}error: {last['error']}")
    click.echo("(* an operator's schedule; the rest follow the HUB_SYNC_* defaults)")


@syncs_cli.command("show")
@click.argument("kind")
@click.argument("owner", metavar="TENANT|hub")
def show_sync(kind: str, owner: str) -> None:
    """One sync with its recent runs and their reports, as JSON."""
    from app.syncs.service import get_sync

    view = get_sync(hub=resources(), schedule_id=_sync_id(kind, owner), tenant_id=None)
    click.echo(json.dumps(view, indent=2))


@syncs_cli.command("set")
@click.argument("kind")
@click.argument("owner", metavar="TENANT|hub")
@click.option("--schedule", "spec", help="Seconds between runs, or a crontab in UTC "
              "(\"30 6 * * *\").")
@click.option("--default", "use_default", is_flag=True, help="Follow the HUB_SYNC_* default "
              "again.")
@click.option("--enable/--disable", default=None, help="Switch the sync on or off.")
def set_sync(kind: str, owner: str, spec: str | None, use_default: bool,
             enable: bool | None) -> None:
    """Change one sync's schedule or switch it on/off; beat follows within a loop."""
    from app.syncs.service import SyncProblem, update_sync

    if spec and use_default:
        raise click.UsageError("give --schedule or --default, not both")
    changes: dict = {}
    if spec or use_default:
        changes["schedule"] = None if use_default else spec
    if enable is not None:
        changes["enabled"] = enable
    if not changes:
        raise click.UsageError("nothing to change: give --schedule, --default, --enable or "
                               "--disable")
    try:
        view = update_sync(hub=resources(), schedule_id=_sync_id(kind, owner), tenant_id=None,
                           actor="cli", **changes)
    except SyncProblem as problem:
        detail = problem.detail
        if problem.errors:
            detail += " " + "; ".join(problem.errors["json"]["schedule"])
        raise click.ClickException(detail) from None
    click.echo(f"{kind} for {owner}: schedule {view['schedule']['spec']}, "
               f"{'enabled' if view['enabled'] else 'disabled'}, next due "
               f"{view['next_due_at'] or '-'}")


@syncs_cli.command("run")
@click.argument("kind")
@click.argument("owner", metavar="TENANT|hub")
def run_sync_now(kind: str, owner: str) -> None:
    """Send one sync's task now (skipped and counted if its previous run is still going)."""
    from app.syncs.service import trigger_sync

    sent = trigger_sync(hub=resources(), schedule_id=_sync_id(kind, owner), tenant_id=None)
    click.echo(f"sent task {sent['task_id']}")


@syncs_cli.command("apply")
def apply_syncs() -> None:
    """Create new tenants' syncs and write every enabled one into beat's schedule now."""
    from app.syncs.service import apply_schedules

    click.echo(json.dumps(apply_schedules(hub=resources())))
