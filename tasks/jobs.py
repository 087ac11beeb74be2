"""Job tasks: plan → chord(one unit task per hospital unit, io queue) → merge (compute queue).

Tasks take ids only (job id, unit code: everything else is read from the job's row) and
return small PHI-free dicts: Flower and the result backend show both. The work itself is in
``app.jobs.service``.
"""

from __future__ import annotations

import random

from celery import chord

from app.connectors.resilience import DownstreamError
from app.extensions import resources
from app.jobs import service
from app.observability.context import enter_tenant
from app.phi.boundary import assert_task_arguments
from tasks.celery_app import celery_app

# A job whose units all finished this long ago but which is still running lost its merge.
RECONCILE_IDLE_SECONDS = 60


@celery_app.task(name="hub.compute.plan_job", bind=True)
def plan_job(self, job_id: str) -> dict:
    """Start the job and fan its units out as a chord whose body merges the partials."""
    hub = resources()
    units = service.start_job(db_session=hub.database.session, job_id=job_id)
    if not units:
        return {"job_id": job_id, "units": 0}
    assert_task_arguments((job_id, *units))  # the unit tasks' arguments: ids only
    header = [run_job_unit.si(job_id, unit) for unit in units]
    task_ids = {unit: signature.freeze().id for unit, signature in zip(units, header,
                                                                         strict=True)}
    service.record_unit_tasks(db_session=hub.database.session, job_id=job_id, task_ids=task_ids)
    body = merge_job_results.si(job_id)
    # One errback on the body: it runs once if the chord breaks, never once per unit.
    body.on_error(mark_job_failed.si(job_id))
    chord(header)(body)
    return {"job_id": job_id, "units": len(units)}


@celery_app.task(name="hub.io.run_job_unit", bind=True)
def run_job_unit(self, job_id: str, unit: str) -> dict:
    """Compute one unit's partial; retry downstream failures with backoff, then dead-letter.
    A unit the entitlement gate refuses stops the job without a downstream call."""
    hub = resources()
    settings = hub.settings
    session = hub.database.session
    verdict = service.begin_unit(db_session=session, job_id=job_id, unit=unit,
                                 max_deliveries=settings.hub_unit_max_deliveries)
    if verdict == "skip":
        return {"job_id": job_id, "unit": unit, "status": "skipped"}
    if verdict == "exhausted":
        service.dead_letter_unit(db_session=session, job_id=job_id, unit=unit,
                                 task_name=self.name, attempts=settings.hub_unit_max_deliveries,
                                 error="delivered too many times (worker lost repeatedly)")
        return {"job_id": job_id, "unit": unit, "status": "failed"}
    refusal = service.unit_refusal(db_session=session, job_id=job_id)
    if refusal is not None:
        service.refuse_job(db_session=session, redis_client=hub.redis, database=hub.database,
                           job_id=job_id, unit=unit, refusal=refusal)
        return {"job_id": job_id, "unit": unit, "status": "refused"}
    try:
        partial = service.compute_unit(db_session=session, settings=settings, job_id=job_id,
                                       unit=unit)
    except DownstreamError as failure:
        session.rollback()
        if self.request.retries < settings.hub_unit_task_retries:
            # Exponential backoff with jitter (about 1, 2, 4 … seconds, spread out), and never
            # before an open breaker lets a trial call through: a retry into an open breaker
            # would only spend an attempt.
            countdown = max(_backoff(self.request.retries),
                            getattr(failure, "retry_after", None) or 0)
            raise self.retry(countdown=countdown, exc=failure) from None
        service.dead_letter_unit(db_session=session, job_id=job_id, unit=unit,
                                 task_name=self.name, attempts=self.request.retries + 1,
                                 error=f"{type(failure).__name__}: {failure}")
        return {"job_id": job_id, "unit": unit, "status": "failed"}
    service.finish_unit(db_session=session, job_id=job_id, unit=unit, partial=partial)
    return {"job_id": job_id, "unit": unit, "status": "done"}


def _backoff(retries: int) -> float:
    return random.uniform(0.5, 1.0) * (2 ** retries)


@celery_app.task(name="hub.compute.merge_job_results")
def merge_job_results(job_id: str) -> dict:
    """Merge the units' partials into the checked, de-identified result."""
    hub = resources()
    status = service.merge_job(db_session=hub.database.session, settings=hub.settings,
                               job_id=job_id)
    return {"job_id": job_id, "status": status}


@celery_app.task(name="hub.compute.mark_job_failed")
def mark_job_failed(job_id: str) -> dict:
    """Errback of the merge: the chord broke unexpectedly."""
    service.fail_job(db_session=resources().database.session, job_id=job_id,
                     error="the job's pipeline failed unexpectedly; see the worker logs")
    return {"job_id": job_id, "status": "failed"}


@celery_app.task(name="hub.maintenance.reconcile_jobs", ignore_result=True)
def reconcile_jobs() -> None:
    """Merge running jobs whose units are all finished but whose merge never ran."""
    hub = resources()
    for job_id, tenant in service.jobs_awaiting_merge(db_session=hub.database.session,
                                                      idle_seconds=RECONCILE_IDLE_SECONDS):
        # Stamped into the merge's headers (task_context), so its log lines name the tenant.
        enter_tenant(tenant)
        merge_job_results.delay(job_id)
    enter_tenant(None)


@celery_app.task(name="hub.maintenance.dispatch_job_outbox", ignore_result=True)
def dispatch_job_outbox() -> dict:
    """Send job and replayed-unit tasks stored but never acknowledged by the broker."""
    hub = resources()
    return service.dispatch_pending(db_session=hub.database.session, settings=hub.settings)
