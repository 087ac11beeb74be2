"""Maintenance tasks: the retention purge."""

from __future__ import annotations

from dataclasses import asdict

from flask import current_app

from app.maintenance.service import purge_expired, remember_report
from tasks.celery_app import celery_app


@celery_app.task(name="hub.maintenance.purge_expired_data")
def purge_expired_data() -> dict:
    """Purge expired results, idempotency keys, unit partials and old audit events; return
    the counts (no ids, no data)."""
    hub = current_app.extensions["hub"]
    report = purge_expired(db_session=hub.database.session,
                           audit_retention_days=hub.settings.hub_audit_retention_days)
    remember_report(hub.redis, report)
    return asdict(report)
