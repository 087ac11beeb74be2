"""Sync tasks, one per kind of sync, each sent by beat with the schedule id as its only
argument (Flower shows ids, never data). The work, the single-flight lock and the run record
are in ``app.syncs.service``."""

from __future__ import annotations

from app.extensions import resources
from app.syncs.service import apply_schedules, run_sync
from tasks.celery_app import celery_app


def _run(task, schedule_id: str) -> dict:
    hub = resources()
    return run_sync(db_session=hub.database.session, redis_client=hub.redis,
                    settings=hub.settings, schedule_id=schedule_id, task_id=task.request.id)


@celery_app.task(name="hub.io.sync_inventory_snapshot", bind=True)
def sync_inventory_snapshot(self, schedule_id: str) -> dict:
    """Copy a tenant's System A catalogue, containers and movements into the hub."""
    return _run(self, schedule_id)


@celery_app.task(name="hub.io.warm_cache", bind=True)
def warm_cache(self, schedule_id: str) -> dict:
    """Refresh a tenant's most requested lookups in the cache."""
    return _run(self, schedule_id)


@celery_app.task(name="hub.io.submit_nightly_counts", bind=True)
def submit_nightly_counts(self, schedule_id: str) -> dict:
    """Submit a tenant's previous-day administration counts job."""
    return _run(self, schedule_id)


@celery_app.task(name="hub.io.read_administration_changes", bind=True)
def read_administration_changes(self, schedule_id: str) -> dict:
    """Publish a tenant's newly charted doses (System B) since the watermark."""
    return _run(self, schedule_id)


@celery_app.task(name="hub.io.read_movement_changes", bind=True)
def read_movement_changes(self, schedule_id: str) -> dict:
    """Publish a tenant's newly scanned container movements (System A) since the watermark."""
    return _run(self, schedule_id)


@celery_app.task(name="hub.maintenance.purge_expired_data", bind=True)
def purge_expired_data(self, schedule_id: str) -> dict:
    """Hub-wide retention purge (the counts are the run's report)."""
    return _run(self, schedule_id)


@celery_app.task(name="hub.maintenance.apply_sync_schedules")
def apply_sync_schedules() -> dict:
    """Give new tenants their syncs and make beat's entries match the schedules table."""
    hub = resources()
    return apply_schedules(db_session=hub.database.session, settings=hub.settings)
