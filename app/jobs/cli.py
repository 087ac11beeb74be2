"""``flask --app wsgi hub dead-letters …``, ``hub jobs dispatch-pending`` and ``hub smoke``: the
workers' side of jobs."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from app.extensions import resources
from app.problems import Problem
from app.tenants.cli import tenant_by_slug

dead_letters_cli = AppGroup("dead-letters", help="Units of jobs that exhausted their retries.")
jobs_cli = AppGroup("jobs", help="Jobs' plumbing: the outbox of tasks not yet sent.")


@jobs_cli.command("dispatch-pending")
def dispatch_pending() -> None:
    """Send now what the outbox dispatcher would: job and replayed-unit tasks the broker has
    not acknowledged (the broker was down when they were submitted)."""
    from app.jobs.service import dispatch_pending as dispatch_outbox

    hub = resources()
    click.echo(json.dumps(dispatch_outbox(db_session=hub.database.session,
                                          settings=hub.settings)))


@click.command("smoke")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait.")
def smoke(timeout: float) -> None:
    """Run the smoke chain (io → compute) and chord (io fan-out → compute) on the workers."""
    from app.jobs.dispatch import submit_smoke_chain, submit_smoke_chord

    chained = submit_smoke_chain(21).get(timeout=timeout)
    chorded = submit_smoke_chord(10).get(timeout=timeout)
    click.echo(json.dumps({"chain": chained, "chord": chorded}))
    if chained["value"] != 42 or chorded["total"] != sum(n * n for n in range(10)):
        raise click.ClickException("smoke pipeline returned wrong figures")


@dead_letters_cli.command("list")
@click.option("--tenant", "tenant_slug", help="Only this tenant's dead letters.")
@click.option("--all", "show_all", is_flag=True, help="Replayed ones too.")
def list_dead_letters(tenant_slug: str | None, show_all: bool) -> None:
    """List dead letters: task, job, tenant, unit, attempts, PHI-free error."""
    from app.jobs.service import list_dead_letters as dead_letters

    tenant_id = str(tenant_by_slug(tenant_slug).id) if tenant_slug else None
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
    from app.jobs.service import replay_dead_letter as replay

    try:
        letter = replay(db_session=resources().database.session,
                        settings=resources().settings, tenant_id=None,
                        dead_letter_id=dead_letter_id)
    except Problem as problem:
        raise click.ClickException(problem.detail) from None
    click.echo(f"replaying unit {letter.unit} of job {letter.job_id}")
