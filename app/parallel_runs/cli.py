"""``flask --app wsgi hub parallel-runs …``: configure a lookup's parallel run against the
legacy endpoint it replaces, and read its report."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from app.extensions import resources
from app.problems import Problem
from app.tenants.cli import tenant_by_slug

parallel_runs_cli = AppGroup("parallel-runs", help="Parallel runs (shadow mode) of lookups "
                                                   "against legacy endpoints.")


def _refused(problem: Problem) -> click.ClickException:
    fields = (problem.errors or {}).get("json", {})
    reasons = "; ".join(f"{name}: {', '.join(messages)}" for name, messages in fields.items())
    return click.ClickException(f"{problem.detail} {reasons}".strip())


@parallel_runs_cli.command("set")
@click.argument("tenant_slug", metavar="TENANT")
@click.argument("lookup")
@click.option("--legacy-url", help="Base URL of the legacy endpoint.")
@click.option("--credential-ref", help="env:NAME or file:PATH of the legacy endpoint's key.")
@click.option("--timezone", "legacy_timezone", help="Zone of the legacy endpoint's local "
              "times (IANA name).")
@click.option("--sample-rate", type=float, help="Fraction of lookups compared, 0 to 1.")
@click.option("--enable/--disable", default=None, help="Switch the parallel run on or off.")
def set_parallel_run(tenant_slug: str, lookup: str, legacy_url: str | None,
                     credential_ref: str | None, legacy_timezone: str | None,
                     sample_rate: float | None, enable: bool | None) -> None:
    """Create or change a tenant's parallel run of LOOKUP (container_origin)."""
    from app.parallel_runs.service import configure_parallel_run

    given = {name: value for name, value in (
        ("legacy_base_url", legacy_url), ("legacy_credential_ref", credential_ref),
        ("legacy_timezone", legacy_timezone), ("sample_rate", sample_rate)) if value is not None}
    try:
        view = configure_parallel_run(
            db_session=resources().database.session,
            tenant_id=str(tenant_by_slug(tenant_slug).id), lookup=lookup, actor="cli",
            enabled=enable, **given)
    except Problem as problem:
        raise _refused(problem) from None
    click.echo(f"parallel run {view['id']}: {view['lookup']} of {view['tenant']} against "
               f"{view['legacy_base_url']}, sample rate {view['sample_rate']:g}, "
               f"{'enabled' if view['enabled'] else 'disabled'}")


@parallel_runs_cli.command("list")
@click.option("--tenant", "tenant_slug", help="Only this tenant's parallel runs.")
def list_parallel_runs(tenant_slug: str | None) -> None:
    """Every parallel run with its counts and mismatch rate."""
    from app.parallel_runs.service import list_parallel_runs as runs

    tenant_id = str(tenant_by_slug(tenant_slug).id) if tenant_slug else None
    for view in runs(db_session=resources().database.session, tenant_id=tenant_id):
        counts = view["counts"]
        rate = "-" if view["mismatch_rate"] is None else f"{view['mismatch_rate']:.1%}"
        click.echo(f"{view['tenant']:18} {view['lookup']:18} "
                   f"{'on ' if view['enabled'] else 'off'} sample {view['sample_rate']:<5g} "
                   f"compared {counts['comparisons']:6} match {counts['matches']:6} "
                   f"mismatch {counts['mismatches']:6} ({rate}) legacy errors "
                   f"{counts['legacy_errors']}")


@parallel_runs_cli.command("show")
@click.argument("tenant_slug", metavar="TENANT")
@click.argument("lookup")
def show_parallel_run(tenant_slug: str, lookup: str) -> None:
    """One parallel run's report, as JSON."""
    from app.parallel_runs.service import get_parallel_run, run_id_for

    session = resources().database.session
    try:
        run_id = run_id_for(db_session=session, tenant_id=str(tenant_by_slug(tenant_slug).id),
                            lookup=lookup)
    except Problem as problem:
        raise _refused(problem) from None
    click.echo(json.dumps(get_parallel_run(db_session=session, run_id=run_id, tenant_id=None),
                          indent=2))
