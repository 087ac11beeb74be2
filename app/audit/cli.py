"""``flask --app wsgi hub audit …``: check the audit chain, write queued events now."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
import redis
from flask.cli import AppGroup

from app.audit.chain import verify_chain
from app.audit.service import pending_count, write_pending_events
from app.extensions import resources

audit_cli = AppGroup("audit", help="Inspect the audit trail.")

# Wait for a drain already running (the beat task) rather than return without writing.
FLUSH_WAIT_SECONDS = 30.0


@audit_cli.command("verify")
def verify() -> None:
    """Recompute the audit chain; exit 1 if a row was edited or removed."""
    report = verify_chain(resources().database.session)
    click.echo(json.dumps(asdict(report)))
    if not report.ok:
        raise click.exceptions.Exit(1)


@audit_cli.command("flush")
def flush() -> None:
    """Write every queued audit event into the audit table now."""
    hub = resources()
    try:
        written = write_pending_events(redis_client=hub.redis, db_session=hub.database.session,
                                       wait_seconds=FLUSH_WAIT_SECONDS)
        still_pending = pending_count(redis_client=hub.redis)
    except redis.RedisError as error:
        raise click.ClickException(f"Redis is unreachable ({type(error).__name__}): nothing is "
                                   "queued there; the API writes events directly meanwhile") from None
    click.echo(json.dumps({"written": written, "still_pending": still_pending}))
