"""Audit maintenance: move the events the API queued in Redis into the audit table."""

from __future__ import annotations

from app.audit.service import write_pending_events
from app.extensions import resources
from tasks.celery_app import celery_app


# Runs every 5 s from beat: a stored result per run would only fill the result backend.
@celery_app.task(name="hub.maintenance.write_audit_events", ignore_result=True)
def write_audit_events() -> int:
    """Write queued audit events into the chain; return how many rows were added."""
    hub = resources()
    return write_pending_events(redis_client=hub.redis, db_session=hub.database.session)
