"""``flask --app wsgi hub …``: operator commands of the hub.

Each domain package owns its commands in its own ``cli.py``; this module only assembles them
under ``hub``, plus the hub-wide commands that belong to no domain (migrations, settings).
The demo tenants are onboarded by the local stack, not here: ``python -m devstack onboard``.
"""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from app.audit.cli import audit_cli
from app.clients.cli import clients_cli
from app.database import upgrade_schema
from app.entitlements.cli import entitlements_cli
from app.events.cli import events_cli
from app.extensions import resources
from app.jobs.cli import dead_letters_cli, jobs_cli, smoke
from app.parallel_runs.cli import parallel_runs_cli
from app.pharmacy.cli import hl7_cli
from app.settings import settings_table
from app.syncs.cli import syncs_cli
from app.tenants.cli import connections_cli, connectors_cli, tenants_cli

hub_cli = AppGroup("hub", help="Operate the medication hub.")
for _command in (tenants_cli, connections_cli, connectors_cli, clients_cli, entitlements_cli,
                 audit_cli, jobs_cli, dead_letters_cli, syncs_cli, parallel_runs_cli, events_cli, hl7_cli,
                 smoke):
    hub_cli.add_command(_command)


@hub_cli.command("migrate")
@click.option("--revision", default="head", show_default=True)
def migrate(revision: str) -> None:
    """Apply database migrations."""
    upgrade_schema(resources().settings.database_url, revision)
    click.echo(f"database migrated to {revision}")


@hub_cli.command("settings")
def show_settings() -> None:
    """Print the effective settings (secrets and passwords hidden)."""
    click.echo(json.dumps(resources().settings.redacted(), indent=2))


@hub_cli.command("settings-table")
def print_settings_table() -> None:
    """Print the Markdown table of every setting (the README's table)."""
    click.echo(settings_table())
