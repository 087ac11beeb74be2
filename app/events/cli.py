"""``flask --app wsgi hub events …``: webhook subscriptions, dead-lettered deliveries and their
replay, and the outbox sweep, for the hub's operators."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from app.extensions import resources
from app.problems import Problem
from app.tenants.cli import tenant_by_slug

events_cli = AppGroup("events", help="Webhook subscriptions, dead letters and replays.")


@events_cli.command("subscriptions")
@click.argument("tenant_slug")
def list_subscriptions(tenant_slug: str) -> None:
    """A tenant's subscriptions with their status, counts and pause reason, as JSON."""
    from app.events.subscriptions import list_subscriptions as subscriptions

    views = subscriptions(db_session=resources().database.session,
                          tenant_id=str(tenant_by_slug(tenant_slug).id))
    click.echo(json.dumps(views, indent=2))


@events_cli.command("dead-letters")
@click.option("--tenant", "tenant_slug", help="Only this tenant's dead letters.")
def list_dead_letters(tenant_slug: str | None) -> None:
    """Deliveries that exhausted their retry horizon, newest first."""
    from app.events.subscriptions import list_dead_letters as dead_letters

    tenant_id = str(tenant_by_slug(tenant_slug).id) if tenant_slug else None
    for view in dead_letters(db_session=resources().database.session, tenant_id=tenant_id):
        click.echo(f"{view['id']}  {view['event_type']:24} subscription "
                   f"{view['subscription_id']}  attempts {view['attempts']}  "
                   f"{view['dead_lettered_at']}  {view['last_error'] or ''}")


@events_cli.command("replay")
@click.argument("delivery_id")
def replay(delivery_id: str) -> None:
    """Send a dead-lettered delivery again (same webhook-id, a fresh retry horizon)."""
    from app.events.subscriptions import replay_delivery

    try:
        view = replay_delivery(db_session=resources().database.session, tenant_id=None,
                               delivery_id=delivery_id)
    except Problem as problem:
        raise click.ClickException(problem.detail) from None
    click.echo(f"replayed {view['id']} ({view['webhook_id']})")


@events_cli.command("sweep")
def sweep() -> None:
    """Send now what the outbox sweeper would: fan-outs and due deliveries never sent."""
    from app.events.service import sweep as sweep_outbox

    hub = resources()
    click.echo(json.dumps(sweep_outbox(db_session=hub.database.session, settings=hub.settings)))
