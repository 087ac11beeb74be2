"""Job tasks: plan → chord(one unit task per hospital unit, io queue) → merge (compute queue).

Tasks take ids only (job id, unit code: everything else is read from the job's row) and
return small PHI-free dicts: Flower and the result backend show both. The work itself is in
``app.jobs.service``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from celery import chord
from celery.exceptions import Retry

from app.connectors.resilience import DownstreamError
from app.extensions import resources
from app.jobs import service
from app.observability.context import enter_tenant
from app.observability.metrics import JOB_TASK_OUTAGE_RETRIES
from app.phi.boundary import assert_task_arguments
from app.problems import outage_of
from tasks.celery_app import celery_app

logger = logging.getLogger(__name__)

# A job whose units all finished this long ago but which is still running lost its merge.
RECONCILE_IDLE_SECONDS = 60
# Message headers of a job task's retries during an outage: how many so far, and since when
# (epoch seconds), so the outage budget is counted apart from downstream retries.
OUTAGE_RETRIES_HEADER = "hub_outage_retries"
OUTAGE_SINCE_HEADER = "hub_outage_since"


def _rollback(hub) -> None:
    """Drop the session's failed transaction; a database that is gone may refuse even that."""
    try:
        hub.database.session.rollback()
    except Exception:  # noqa: BLE001 - the session is discarded either way
        hub.database.remove_session()


def _outage_retries(task) -> int:
    return int(task.request.get(OUTAGE_RETRIES_HEADER) or 0)


def _retry_on_outage(task, failure: BaseException, hub, **ids) -> None:
    """Raise ``task``'s retry after ``failure``, an unavailable database, Redis or broker,
    while the outage budget (``HUB_UNIT_OUTAGE_RETRY_SECONDS``) lasts; return once it is
    spent. The outage's retries are counted in message headers, apart from the task's
    downstream retries, so riding out an outage does not use those up."""
    outage = outage_of(failure)
    retries = _outage_retries(task)
    since = float(task.request.get(OUTAGE_SINCE_HEADER) or time.time())
    delay = service.outage_retry_delay(settings=hub.settings, outage_retries=retries,
                                       first_outage_at=since, now=time.time())
    if delay is None:
        return
    JOB_TASK_OUTAGE_RETRIES.labels(task=task.name).inc()
    logger.warning("job task retries in %.1fs: %s", delay, outage.problem_type,
                   extra={**ids, "outage_retries": retries + 1})
    headers = {**(task.request.headers or {}), OUTAGE_RETRIES_HEADER: retries + 1,
               OUTAGE_SINCE_HEADER: since}
    raise task.retry(countdown=delay, exc=failure, headers=headers) from None


def _riding_out_outages(task, hub, work: Callable[[], dict], *, job_id: str, undone: str,
                        left_to: str, deferred: dict) -> dict:
    """Run a job-level step (plan, merge, errback): an unavailable database or Redis is
    retried with backoff while the outage budget lasts; past it the step answers ``deferred``
    and leaves the job to ``left_to``."""
    try:
        return work()
    except Exception as failure:
        if outage_of(failure) is None:
            raise
        _rollback(hub)
        _retry_on_outage(task, failure, hub, job_id=job_id)
        logger.error("job not %s: the outage outlasted its retries; left to the %s", undone,
                     left_to, extra={"job_id": job_id})
        return deferred


@celery_app.task(name="hub.compute.plan_job", bind=True, max_retries=None)
def plan_job(self, job_id: str) -> dict:
    """Start the job and fan its units out as a chord whose body merges the partials."""
    hub = resources()
    # Past the outage budget the job is still queued, or running with its units pending:
    # the orphan reconciler sends it.
    return _riding_out_outages(
        self, hub, lambda: _plan(hub, job_id, resume=_outage_retries(self) > 0),
        job_id=job_id, undone="planned", left_to="orphan reconciler",
        deferred={"job_id": job_id, "units": 0, "status": "deferred"})


def _plan(hub, job_id: str, *, resume: bool) -> dict:
    units = service.start_job(db_session=hub.database.session, job_id=job_id, resume=resume)
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


@celery_app.task(name="hub.io.run_job_unit", bind=True, max_retries=None)
def run_job_unit(self, job_id: str, unit: str) -> dict:
    """Compute one unit's partial; retry downstream failures with backoff, then dead-letter.
    An unavailable database or Redis is retried for minutes, then dead-lettered; if even
    that cannot be written the unit is left to the orphan reconciler. A unit the
    entitlement gate refuses stops the job without a downstream call."""
    hub = resources()
    try:
        return _run_unit(self, hub, job_id, unit)
    except Retry:
        raise
    except Exception as failure:
        if outage_of(failure) is None:
            raise
        _rollback(hub)
        _retry_on_outage(self, failure, hub, job_id=job_id, unit=unit)
        return _give_up_unit(self, hub, job_id, unit, failure)


def _give_up_unit(task, hub, job_id: str, unit: str, failure: BaseException) -> dict:
    """Dead-letter a unit whose outage outlasted its retries; with the database still down,
    leave it (running, or pending) for the orphan reconciler, which sends it again once the
    database is back: never in limbo."""
    outage = outage_of(failure)
    try:
        service.dead_letter_unit(db_session=hub.database.session, job_id=job_id, unit=unit,
                                 task_name=task.name, attempts=task.request.retries + 1,
                                 error=f"{type(failure).__name__}: {outage.problem_type}")
    except Exception as again:
        if outage_of(again) is None:
            raise
        _rollback(hub)
        logger.error("unit neither run nor dead-lettered (%s); left to the orphan reconciler",
                     outage.problem_type, extra={"job_id": job_id, "unit": unit})
        return {"job_id": job_id, "unit": unit, "status": "orphaned"}
    return {"job_id": job_id, "unit": unit, "status": "failed"}


def _run_unit(task, hub, job_id: str, unit: str) -> dict:
    settings = hub.settings
    session = hub.database.session
    outage_retries = _outage_retries(task)
    # A retry of this task is not a new delivery; a redelivery (its worker was lost) is.
    counted = task.request.retries == 0 or bool(
        (task.request.delivery_info or {}).get("redelivered"))
    verdict = service.begin_unit(db_session=session, job_id=job_id, unit=unit,
                                 max_deliveries=settings.hub_unit_max_deliveries,
                                 counted=counted)
    if verdict == "skip":
        return {"job_id": job_id, "unit": unit, "status": "skipped"}
    if verdict == "exhausted":
        service.dead_letter_unit(db_session=session, job_id=job_id, unit=unit,
                                 task_name=task.name, attempts=settings.hub_unit_max_deliveries,
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
        downstream_retries = task.request.retries - outage_retries
        if downstream_retries < settings.hub_unit_task_retries:
            # Exponential backoff with jitter (about 1, 2, 4 … seconds, spread out), and never
            # before an open breaker lets a trial call through: a retry into an open breaker
            # would only spend an attempt.
            countdown = max(_backoff(downstream_retries),
                            getattr(failure, "retry_after", None) or 0)
            raise task.retry(countdown=countdown, exc=failure) from None
        service.dead_letter_unit(db_session=session, job_id=job_id, unit=unit,
                                 task_name=task.name, attempts=downstream_retries + 1,
                                 error=f"{type(failure).__name__}: {failure}")
        return {"job_id": job_id, "unit": unit, "status": "failed"}
    service.finish_unit(db_session=session, job_id=job_id, unit=unit, partial=partial)
    return {"job_id": job_id, "unit": unit, "status": "done"}


def _backoff(retries: int) -> float:
    return random.uniform(0.5, 1.0) * (2 ** retries)


@celery_app.task(name="hub.compute.merge_job_results", bind=True, max_retries=None)
def merge_job_results(self, job_id: str) -> dict:
    """Merge the units' partials into the checked, de-identified result. An unavailable
    database is retried with backoff; past the outage budget the merge reconciler merges."""
    hub = resources()
    return _riding_out_outages(
        self, hub, lambda: {"job_id": job_id, "status": service.merge_job(
            db_session=hub.database.session, settings=hub.settings, job_id=job_id)},
        job_id=job_id, undone="merged", left_to="merge reconciler",
        deferred={"job_id": job_id, "status": "deferred"})


@celery_app.task(name="hub.compute.mark_job_failed", bind=True, max_retries=None)
def mark_job_failed(self, job_id: str) -> dict:
    """Errback of the merge: the chord broke unexpectedly. An unavailable database is
    retried with backoff; past the outage budget, the reconcilers finish the job (its broken
    unit is re-dispatched until it is done or dead-lettered, then the job is merged)."""
    hub = resources()

    def fail() -> dict:
        service.fail_job(db_session=hub.database.session, job_id=job_id,
                         error="the job's pipeline failed unexpectedly; see the worker logs")
        return {"job_id": job_id, "status": "failed"}

    return _riding_out_outages(self, hub, fail, job_id=job_id, undone="marked failed",
                               left_to="reconcilers",
                               deferred={"job_id": job_id, "status": "deferred"})


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


@celery_app.task(name="hub.maintenance.redispatch_orphaned_units", ignore_result=True)
def redispatch_orphaned_units() -> dict:
    """Re-send job units (and plans) that no live worker holds: a killed worker's, or ones
    lost while the database was down (the orphan reconciler, every 15 s)."""
    hub = resources()
    return service.redispatch_orphans(db_session=hub.database.session, redis_client=hub.redis,
                                      settings=hub.settings, now=time.time())
