"""Audit maintenance: move the events the API queued in Redis into the audit table."""

from __future__ import annotations

import logging

from app.audit.service import write_pending_events
from app.extensions import resources
from tasks.celery_app import celery_app

logger = logging.getLogger(__name__)


# Runs every 5 s from beat: a stored result per run would only fill the result backend.
@celery_app.task(name="hub.maintenance.write_audit_events", ignore_result=True)
def write_audit_events() -> int:
    """Write queued audit events into the chain; return how many rows were added."""
    hub = resources()
    written = write_pending_events(redis_client=hub.redis, db_session=hub.database.session)
    # Every 5 s: a line only when there was something to write, or an idle stack's log would
    # be nothing but this.
    if written:
        logger.info("audit events written", extra={"events": written})
    return written
