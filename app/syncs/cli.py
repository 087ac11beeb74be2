"""``flask --app wsgi hub syncs …``: scheduled syncs — list, change, switch off, run now."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from app.extensions import resources
from app.problems import Problem
from app.tenants.cli import tenant_by_slug

syncs_cli = AppGroup("syncs", help="Scheduled syncs: list, change, switch off, run now.")


def _sync_id(kind: str, owner: str) -> str:
    from app.syncs.service import sync_id_for

    try:
        return sync_id_for(db_session=resources().database.session, kind=kind, owner=owner)
    except Problem as problem:
        raise click.ClickException(problem.detail) from None


@syncs_cli.command("list")
@click.option("--tenant", "tenant_slug", help="Only this tenant's syncs (and the hub-wide).")
def list_syncs(tenant_slug: str | None) -> None:
    """Every sync: schedule, status, last run, next due time, failures and skips."""
    from app.syncs.service import list_syncs as syncs

    tenant_id = str(tenant_by_slug(tenant_slug).id) if tenant_slug else None
    hub = resources()
    for view in syncs(db_session=hub.database.session, settings=hub.settings,
                      tenant_id=tenant_id):
        last = view["last_run"] or {}
        click.echo(
            f"{view['sync']:22} {view['tenant'] or 'hub':18} "
            f"{view['schedule']['spec'] + ('*' if view['schedule']['customized'] else ''):14} "
            f"{view['status']:10} last {last.get('outcome', '-'):9} "
            f"{last.get('started_at') or '-':27} {last.get('duration_seconds') or 0:8.2f}s  "
            f"next {view['next_due_at'] or '-':27} failures {view['consecutive_failures']} "
            f"skipped {view['skipped_runs']}")
        if last.get("error"):
            click.echo(f"{'':42}error: {last['error']}")
    click.echo("(* an operator's schedule; the rest follow the HUB_SYNC_* defaults)")


@syncs_cli.command("show")
@click.argument("kind")
@click.argument("owner", metavar="TENANT|hub")
def show_sync(kind: str, owner: str) -> None:
    """One sync with its recent runs and their reports, as JSON."""
    from app.syncs.service import get_sync

    hub = resources()
    view = get_sync(db_session=hub.database.session, settings=hub.settings,
                    schedule_id=_sync_id(kind, owner), tenant_id=None)
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
    from app.syncs.service import update_sync

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
    hub = resources()
    try:
        view = update_sync(db_session=hub.database.session, settings=hub.settings,
                           schedule_id=_sync_id(kind, owner), tenant_id=None, actor="cli",
                           **changes)
    except Problem as problem:
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

    sent = trigger_sync(db_session=resources().database.session,
                        schedule_id=_sync_id(kind, owner), tenant_id=None)
    click.echo(f"sent task {sent['task_id']}")


@syncs_cli.command("apply")
def apply_syncs() -> None:
    """Create new tenants' syncs and write every enabled one into beat's schedule now."""
    from app.syncs.service import apply_schedules

    hub = resources()
    click.echo(json.dumps(apply_schedules(db_session=hub.database.session,
                                          settings=hub.settings)))


@syncs_cli.command("backfill-changes")
@click.argument("tenant_slug", metavar="TENANT")
@click.argument("feed", type=click.Choice(["administrations", "movements"]))
@click.option("--since", help="Publish again everything the system recorded at or after this "
              "time (ISO 8601 with a UTC offset, e.g. 2026-12-01T00:00:00Z). Without it the "
              "feed starts over from now.")
def backfill_changes(tenant_slug: str, feed: str, since: str | None) -> None:
    """Move a tenant's change-feed watermark: back to a time (a backfill), or to now."""
    from datetime import datetime

    from app.syncs.changes import FEEDS, start_from

    moment = None
    if since:
        try:
            moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter("not an ISO 8601 time", param_hint="--since") from None
        if moment.tzinfo is None:
            raise click.BadParameter("needs a UTC offset (Z or +hh:mm)", param_hint="--since")
    hub = resources()
    try:
        position = start_from(db_session=hub.database.session, settings=hub.settings,
                              tenant=tenant_by_slug(tenant_slug), feed=FEEDS[feed], since=moment)
    except Problem as problem:
        raise click.ClickException(problem.detail) from None
    click.echo(f"{feed} of {tenant_slug}: the next run publishes from feed position "
               f"{position} on ({'recorded since ' + since if since else 'from now'})")
