"""``flask --app wsgi hub …``: operator commands of the hub."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import AppGroup

from app.database import upgrade_schema
from app.extensions import resources
from app.settings import settings_table

hub_cli = AppGroup("hub", help="Operate the medication hub.")


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
