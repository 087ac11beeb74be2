"""The parallel-run comparison task: the comparison id is its only argument (it names the
hub's answer kept in Redis); the legacy call, the comparison and the record are in
``app.parallel_runs.service``."""

from __future__ import annotations

from app.extensions import resources
from app.parallel_runs.service import compare
from tasks.celery_app import celery_app


@celery_app.task(name="hub.io.compare_parallel_run")
def compare_parallel_run(comparison_id: str) -> str:
    """Ask the legacy endpoint, compare with the hub's answer, record the outcome."""
    hub = resources()
    return compare(db_session=hub.database.session, redis_client=hub.redis,
                   settings=hub.settings, comparison_id=comparison_id)
