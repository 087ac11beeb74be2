"""Jobs: submission (idempotent), reading, cancelling, and the steps the workers run.

Every caller (API, nightly sync, CLI) submits through ``submit_and_dispatch`` and replays
through ``replay_dead_letter``: each validates, records, then hands the work to
``app.jobs.dispatch``. The worker side (``tasks/jobs.py``, thin) calls ``start_job``,
``begin_unit``, ``compute_unit``, ``finish_unit`` and ``merge_job`` here. Every step is
idempotent: job and unit state live in the database, keyed by job and unit, so a redelivered
task overwrites instead of double-counting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from marshmallow import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.audit.records import AuditRecord
from app.audit.service import record_event
from app.cache import service as cache
from app.canonical.times import format_utc, to_utc
from app.clients.models import Client
from app.connectors.registry import UnknownConnector
from app.connectors.resilience import DownstreamError
from app.connectors.routing import NotConnected, connection_connector, connection_target
from app.database import Database, utcnow
from app.entitlements.service import entitlement_refusal, require_entitlement
from app.jobs import dispatch
from app.jobs.models import DeadLetter, Job, JobResult, JobUnit, OutboxMessage
from app.jobs.results import MERGERS
from app.jobs.schemas import PARAMS_SCHEMAS
from app.jobs.work import count_unit_administrations, reconcile_unit, reconcile_unit_dispensing
from app.observability.metrics import JOB_TASKS_REDISPATCHED
from app.phi.boundary import assert_phi_free
from app.problems import Problem
from app.settings import Settings
from app.snapshots.service import snapshot_units
from app.tenants.models import Tenant
from app.tenants.service import get_active_connection

logger = logging.getLogger(__name__)

# Which products each job type reads: the tenant must own every one of them. The first is the
# one whose unit catalogue a submission's units are checked against.
JOB_PRODUCTS = {"administration_counts": ("administration",),
                "dose_reconciliation": ("inventory", "administration"),
                "dispense_reconciliation": ("inventory", "administration", "pharmacy")}
# What each job type asks of each product's connector (app.connectors.registry): checked at
# submission, so a tenant whose system cannot answer is told so before anything is queued.
# (The pharmacy pushes to the hub: a dispense reconciliation reads its store, not a connector.)
JOB_CAPABILITIES = {
    "administration_counts": {"administration": ("unit_codes", "iter_administrations")},
    "dose_reconciliation": {"inventory": ("unit_codes", "dispensed_barcodes"),
                            "administration": ("iter_administrations",)},
    "dispense_reconciliation": {"inventory": ("unit_codes", "dispensed_by_medication"),
                                "administration": ("iter_administrations",)},
}
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE_STATUSES = ("queued", "running")
# How long a client over its active-jobs quota is told to wait: about the time a typical job
# takes to finish and free a slot.
QUOTA_RETRY_AFTER_SECONDS = 30
# How long a client whose submission met an unavailable database is told to wait: about a
# database failover.
DATABASE_RETRY_AFTER_SECONDS = 15
# Outbox messages one dispatcher run sends at most: a long broker outage is caught up over a
# few runs instead of one burst.
OUTBOX_BATCH = 200


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool


def _request_hash(job_type: str, params: dict) -> str:
    canonical = json.dumps({"type": job_type, "params": params}, sort_keys=True,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _stored_params(job_type: str, params: dict) -> dict:
    """The validated parameters as JSON (canonical values, UTC strings)."""
    stored = dict(params)
    stored["window"] = {"since": format_utc(params["window"]["since"]),
                        "until": format_utc(params["window"]["until"])}
    return stored


def _tenant(db_session: Session, tenant_id: uuid.UUID) -> Tenant:
    return db_session.get(Tenant, tenant_id)


# Unit catalogues change rarely; a job submission reads them from the cache when it can.
UNIT_CATALOGUE_SECONDS = 600


def known_units(*, db_session: Session, redis_client, settings: Settings, tenant: Tenant,
                job_type: str) -> list[str]:
    """Return the tenant's unit codes as the system the job reads first knows them."""
    product = JOB_PRODUCTS[job_type][0]
    key = cache.cache_key(key_secret=settings.hub_pseudonym_key, tenant=tenant.slug,
                          system=product, resource_type="units", params={})
    cached = cache.read(redis_client, key, resource_type="units")
    if cached and cached.fresh:
        return cached.payload["units"]
    target = connection_target(db_session=db_session, settings=settings,
                               tenant_id=str(tenant.id), tenant=tenant.slug, product=product)
    try:
        units = target.call("unit_codes")
    except DownstreamError:
        if cached:
            return cached.payload["units"]
        # System A's catalogue is also kept in the hub's inventory snapshot (app.snapshots).
        kept = snapshot_units(db_session=db_session, tenant_id=tenant.id) \
            if product == "inventory" else None
        if kept:
            return kept
        raise
    cache.write(redis_client, key, {"units": units}, fresh_seconds=UNIT_CATALOGUE_SECONDS,
                stale_seconds=settings.hub_cache_stale_seconds)
    return units


def _require_capabilities(db_session: Session, tenant: Tenant, job_type: str) -> None:
    """Refuse (501) a job the tenant's systems cannot answer: a connector without a capability
    the job type needs. A product without a (usable) connection is left to the unit
    catalogue's 503."""
    for product, needed in JOB_CAPABILITIES[job_type].items():
        connection = get_active_connection(db_session=db_session, tenant_id=tenant.id,
                                           product=product)
        try:
            connector = connection_connector(connection) if connection else None
        except UnknownConnector:
            connector = None
        if connector is None:
            continue
        missing = [capability for capability in needed if not connector.offers(capability)]
        if missing:
            raise Problem(f"This tenant's {product} system does not offer what a {job_type} "
                          "job reads.", status=501, problem_type="not-offered-by-system")


def _existing(db_session: Session, tenant_id: uuid.UUID, key: str) -> Job | None:
    return db_session.scalar(select(Job).where(Job.tenant_id == tenant_id,
                                               Job.idempotency_key == key))


def _check_active_jobs_quota(db_session: Session, client_pk: uuid.UUID, limit: int) -> None:
    """Refuse (429) a new job from a client that already has ``limit`` jobs queued or running.

    Called in the transaction that inserts the job. The client's row is locked first
    (``SELECT … FOR UPDATE``), so on PostgreSQL two submissions of one client are counted one
    after the other and cannot both take the last slot; other clients are not held up. SQLite
    has one writer at a time for the whole database, which serializes submissions as well.
    """
    db_session.execute(select(Client.id).where(Client.id == client_pk).with_for_update())
    active = db_session.scalar(select(func.count()).select_from(Job).where(
        Job.client_id == client_pk, Job.status.in_(ACTIVE_STATUSES)))
    if active >= limit:
        raise Problem(f"This client already has {active} active jobs (the limit is {limit}); "
                      "submit again once one has finished or been cancelled.",
                      status=429, problem_type="too-many-active-jobs",
                      retry_after=QUOTA_RETRY_AFTER_SECONDS)


def submit_job(*, db_session: Session, redis_client, settings: Settings, tenant_id: str,
               client_pk: uuid.UUID | None,
               job_type: str, raw_params: dict, idempotency_key: str,
               request_id: str | None) -> Submission:
    """Validate and record a job (or return the job this idempotency key already made).

    Records only: callers start jobs with :func:`submit_and_dispatch`, which also sends it.
    ``client_pk`` is the submitting client's primary key (None for the hub's own jobs, such as
    the nightly counts): a client with ``HUB_MAX_ACTIVE_JOBS_PER_CLIENT`` active jobs gets 429;
    re-posting an existing job's Idempotency-Key still answers that job.
    """
    tenant_uuid = uuid.UUID(tenant_id)
    request_hash = _request_hash(job_type, raw_params)
    existing = _existing(db_session, tenant_uuid, idempotency_key)
    if existing is not None and existing.expires_at is not None \
            and to_utc(existing.expires_at) <= utcnow():
        # The key's retention has passed: it no longer names that job and may be used again.
        existing.idempotency_key = None
        db_session.flush()
        existing = None
    if existing is not None:
        if existing.request_hash != request_hash:
            raise Problem("This Idempotency-Key was used with a different request.", status=409,
                          problem_type="idempotency-key-reused")
        return Submission(existing, created=False)

    try:
        params = PARAMS_SCHEMAS[job_type]().load(raw_params)
    except ValidationError as invalid:
        raise Problem("The request has invalid fields; see errors.", status=422,
                      errors={"json": {"params": invalid.messages}}) from None
    require_entitlement(db_session=db_session, tenant_id=tenant_id,
                        products=JOB_PRODUCTS[job_type], client_pk=client_pk)

    tenant = _tenant(db_session, tenant_uuid)
    _require_capabilities(db_session, tenant, job_type)
    try:
        catalogue = known_units(db_session=db_session, redis_client=redis_client,
                                settings=settings, tenant=tenant, job_type=job_type)
    except (DownstreamError, NotConnected) as unreachable:
        raise Problem("The hospital system holding the unit list is unavailable.", status=503,
                      problem_type="downstream-unavailable", retry_after=10) from unreachable
    units = params.get("units") or catalogue
    # By position, not by value: a unit code a client typed can be a patient's name or MRN
    # that happens to fit the unit grammar ("Jane Doe" reads as JANE-DOE).
    known = set(catalogue)
    unknown = {str(index): ["not a unit of this tenant"]
               for index, unit in enumerate(units) if unit not in known}
    if unknown:
        raise Problem("The request has invalid fields; see errors.", status=422, errors={
            "json": {"params": {"units": unknown}}})

    if client_pk is not None:
        _check_active_jobs_quota(db_session, client_pk, settings.hub_max_active_jobs_per_client)
    now = utcnow()
    job = Job(tenant_id=tenant_uuid, client_id=client_pk, type=job_type,
              params=_stored_params(job_type, params), status="queued",
              idempotency_key=idempotency_key, request_hash=request_hash, request_id=request_id,
              units_total=len(units), units_done=0,
              expires_at=now + timedelta(hours=settings.hub_idempotency_retention_hours))
    db_session.add(job)
    try:
        db_session.flush()
        db_session.add_all(JobUnit(job_id=job.id, unit=unit, status="pending")
                           for unit in sorted(set(units)))
        # The promise to start the job commits with the job (the transactional outbox).
        _add_outbox_message(db_session, settings, task_name=dispatch.PLAN_JOB, job_id=job.id)
        db_session.commit()
    except IntegrityError:
        # The same key was submitted concurrently and the other request won: answer as it did.
        db_session.rollback()
        winner = _existing(db_session, tenant_uuid, idempotency_key)
        if winner is None or winner.request_hash != request_hash:
            raise Problem("This Idempotency-Key was used with a different request.", status=409,
                          problem_type="idempotency-key-reused") from None
        return Submission(winner, created=False)
    return Submission(job, created=True)


def _client_pk(db_session: Session, tenant_id: str, client_id: str | None) -> uuid.UUID | None:
    if client_id is None:
        return None
    client_pk = db_session.scalar(select(Client.id).where(
        Client.client_id == client_id, Client.tenant_id == uuid.UUID(tenant_id)))
    if client_pk is None:
        raise Problem("The client that made this request is not one of this tenant's.",
                      status=403, problem_type="client-disabled")
    return client_pk


def submit_and_dispatch(*, db_session: Session, redis_client, settings: Settings,
                        tenant_id: str, client_id: str | None, job_type: str, raw_params: dict,
                        idempotency_key: str, request_id: str | None) -> Submission:
    """Validate, record and start a job: the one way a job is submitted (API, nightly sync).

    ``client_id`` is the submitting client's public id (the token's ``client_id``), or None
    for the hub's own jobs (beat): the job keeps its client, and the worker checks before each
    unit that this client is still enabled and the tenant still entitled.

    The job and its outbox message commit together; the plan task is then sent at once. A
    broker that is down leaves the message to the outbox dispatcher: the job is accepted and
    will run. A database that is down stores nothing: 503 with Retry-After. The same
    Idempotency-Key again, while the job's plan has still not reached the broker, sends it
    again at once (the job is revived, not answered as a dead one)."""
    try:
        submission = submit_job(
            db_session=db_session, redis_client=redis_client, settings=settings,
            tenant_id=tenant_id, client_pk=_client_pk(db_session, tenant_id, client_id),
            job_type=job_type, raw_params=raw_params, idempotency_key=idempotency_key,
            request_id=request_id)
    except OperationalError:
        db_session.rollback()
        logger.warning("job not accepted: the database is unavailable")
        raise Problem("The hub's database is unavailable; nothing was stored. Submit again "
                      "with the same Idempotency-Key.", status=503,
                      problem_type="database-unavailable",
                      retry_after=DATABASE_RETRY_AFTER_SECONDS) from None
    try:
        send_job_messages(db_session=db_session, settings=settings, job_id=submission.job.id)
    except OperationalError:
        # The job is stored; only recording the send failed. The dispatcher sends (again)
        # what is not marked sent, and a second plan changes nothing.
        db_session.rollback()
        logger.warning("job task send not recorded (database unavailable); the outbox "
                       "dispatcher will see to it", extra={"job_id": str(submission.job.id)})
    return submission


def get_job(*, db_session: Session, tenant_id: str, job_id: str) -> Job:
    """Return the tenant's job; another tenant's job (or none) is 404."""
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        raise Problem("No such job.", status=404) from None
    job = db_session.get(Job, job_uuid)
    if job is None or job.tenant_id != uuid.UUID(tenant_id):
        raise Problem("No such job.", status=404)
    return job


def job_view(*, db_session: Session, job: Job) -> dict:
    """Return what a client sees of a job: status, progress, timestamps, PHI-free error,
    failed units, and the result once succeeded (while retained)."""
    failed_units = list(db_session.scalars(select(JobUnit.unit).where(
        JobUnit.job_id == job.id, JobUnit.status == "failed").order_by(JobUnit.unit)))
    result = None
    if job.status == "succeeded":
        stored = db_session.get(JobResult, job.id)
        if stored is not None and (stored.expires_at is None or
                                   to_utc(stored.expires_at) > utcnow()):
            result = stored.result
    return {"id": str(job.id), "type": job.type, "status": job.status, "params": job.params,
            "progress": {"units_done": job.units_done, "units_total": job.units_total},
            "created_at": job.created_at, "started_at": job.started_at,
            "finished_at": job.finished_at, "error": job.error, "failed_units": failed_units,
            "result": result}


def list_jobs(*, db_session: Session, tenant_id: str, status: str | None, job_type: str | None,
              after: tuple[datetime, str] | None, page_size: int) -> tuple[list[Job], bool]:
    """Return a page of the tenant's jobs, newest first, and whether more follow."""
    query = select(Job).where(Job.tenant_id == uuid.UUID(tenant_id))
    if status:
        query = query.where(Job.status == status)
    if job_type:
        query = query.where(Job.type == job_type)
    if after:
        created, job_id = after
        query = query.where((Job.created_at < created) |
                            ((Job.created_at == created) & (Job.id < uuid.UUID(job_id))))
    jobs = list(db_session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc())
                                   .limit(page_size + 1)))
    return jobs[:page_size], len(jobs) > page_size


def cancel_job(*, db_session: Session, job: Job) -> None:
    """Cancel a queued or running job and revoke its unit tasks not yet started."""
    if not _transition(db_session, job.id, to="cancelled", allowed_from=("queued", "running"),
                       finished_at=utcnow(), error="cancelled by the client"):
        db_session.rollback()
        db_session.refresh(job)
        raise Problem(f"The job has already {job.status}.", status=409, problem_type="job-finished")
    unfinished = list(db_session.scalars(select(JobUnit).where(
        JobUnit.job_id == job.id, JobUnit.status.in_(("pending", "running")))))
    for unit in unfinished:
        unit.status = "cancelled"
    db_session.commit()
    db_session.refresh(job)
    dispatch.revoke_unit_tasks([unit.task_id for unit in unfinished if unit.task_id])


def _transition(db_session: Session, job_id: uuid.UUID, *, to: str, allowed_from: tuple[str, ...],
                **values) -> bool:
    """Move a job to status ``to`` only if it is still in one of ``allowed_from``: one
    conditional UPDATE, so a cancel and a worker racing on the same job cannot overwrite each
    other's outcome. Returns whether this call made the move."""
    moved = db_session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(allowed_from))
        .values(status=to, **values).execution_options(synchronize_session=False)).rowcount
    return bool(moved)


# --- worker side -------------------------------------------------------------------------

def start_job(*, db_session: Session, job_id: str, resume: bool = False) -> list[str]:
    """Mark the job running and return its units still to do ([] if cancelled or done).

    ``resume``: the plan is being retried after an outage that may have struck after the job
    was marked running: a running job's units still pending are returned too (none of them
    was sent; a unit already begun is not)."""
    job_uuid = uuid.UUID(job_id)
    started = _transition(db_session, job_uuid, to="running", allowed_from=("queued",),
                          started_at=utcnow())
    db_session.commit()
    statuses: tuple[str, ...] = ("pending", "running")
    if not started:
        # Cancelled meanwhile, or a redelivered plan of a job already under way.
        if not resume or db_session.scalar(select(Job.status).where(Job.id == job_uuid)) \
                != "running":
            return []
        statuses = ("pending",)
    return list(db_session.scalars(select(JobUnit.unit).where(
        JobUnit.job_id == job_uuid, JobUnit.status.in_(statuses))
        .order_by(JobUnit.unit)))


def record_unit_tasks(*, db_session: Session, job_id: str, task_ids: dict[str, str]) -> None:
    """Remember each unit's Celery task id, so a cancel can revoke it."""
    for unit in db_session.scalars(select(JobUnit).where(JobUnit.job_id == uuid.UUID(job_id))):
        if unit.unit in task_ids:
            unit.task_id = task_ids[unit.unit]
    db_session.commit()


def _unit_row(db_session: Session, job_id: str, unit: str) -> JobUnit | None:
    return db_session.scalar(select(JobUnit).where(JobUnit.job_id == uuid.UUID(job_id),
                                                   JobUnit.unit == unit))


def begin_unit(*, db_session: Session, job_id: str, unit: str, max_deliveries: int,
               counted: bool = True) -> str:
    """Count a delivery of a unit task; return ``run``, ``skip`` (done, cancelled, failed) or
    ``exhausted`` (delivered too often: a worker keeps dying on it).

    ``counted`` False: the task's own retry (after a downstream error or an outage), which
    is not a new delivery, so a long outage does not use up the deliveries. A redelivery
    (a worker was lost) and a re-dispatch of an orphaned unit count."""
    row = _unit_row(db_session, job_id, unit)
    job = db_session.get(Job, uuid.UUID(job_id))
    if row is None or job is None or job.status in FINAL_STATUSES or row.status in (
            "done", "cancelled", "failed"):
        return "skip"
    if counted:
        row.attempts += 1
    row.status = "running"
    db_session.commit()
    return "exhausted" if row.attempts > max_deliveries else "run"


def outage_retry_delay(*, settings: Settings, outage_retries: int, first_outage_at: float,
                       now: float) -> float | None:
    """Seconds before the next try of a job task that met an unavailable database or Redis
    (doubling from about 1 s, with jitter, capped), or None once it has been retrying for
    ``HUB_UNIT_OUTAGE_RETRY_SECONDS``: an outage of minutes is ridden through, a longer one
    ends in a dead letter (or the orphan reconciler, if even that cannot be written)."""
    if now - first_outage_at >= settings.hub_unit_outage_retry_seconds:
        return None
    return min(settings.hub_outage_retry_max_seconds,
               random.uniform(0.5, 1.0) * 2 ** min(outage_retries, 16))


def unit_refusal(*, db_session: Session, job_id: str) -> Problem | None:
    """Return why the job's next unit may not read the hospital systems (a 403 ``Problem``:
    the tenant lost a product the job reads, or the submitting client was disabled), or None.

    Asked of the database, not of this process's memory: a revocation stops the next unit."""
    job = db_session.get(Job, uuid.UUID(job_id))
    return entitlement_refusal(db_session=db_session, tenant_id=str(job.tenant_id),
                               products=JOB_PRODUCTS[job.type], client_pk=job.client_id,
                               remembered=False)


def compute_unit(*, db_session: Session, settings: Settings, job_id: str, unit: str) -> dict:
    """Do one unit's work against the hospital systems and return its partial aggregate.

    Call :func:`unit_refusal` first: this reads the hospital systems."""
    job = db_session.get(Job, uuid.UUID(job_id))
    tenant = _tenant(db_session, job.tenant_id)
    since, until = to_utc(job.params["window"]["since"]), to_utc(job.params["window"]["until"])

    def target(product: str):
        return connection_target(db_session=db_session, settings=settings,
                                 tenant_id=str(tenant.id), tenant=tenant.slug, product=product)

    if job.type == "administration_counts":
        return count_unit_administrations(
            target("administration"), unit=unit, since=since, until=until,
            ndc11=job.params.get("medication"), group_by=job.params["group_by"])
    if job.type == "dispense_reconciliation":
        return reconcile_unit_dispensing(
            target("inventory"), target("administration"), db_session=db_session,
            tenant_id=tenant.id, unit=unit, since=since, until=until)
    return reconcile_unit(target("inventory"), target("administration"), unit=unit,
                          since=since, until=until)


def finish_unit(*, db_session: Session, job_id: str, unit: str, partial: dict) -> None:
    """Store a unit's partial (replacing any earlier delivery's) and the job's progress."""
    row = _unit_row(db_session, job_id, unit)
    job = db_session.get(Job, uuid.UUID(job_id))
    if row is None or job is None or row.status == "cancelled":
        return
    row.partial, row.status, row.error = partial, "done", None
    db_session.flush()
    job.units_done = db_session.scalar(select(func.count()).select_from(JobUnit).where(
        JobUnit.job_id == job.id, JobUnit.status == "done"))
    db_session.commit()


REFUSED_OPERATION = "job.unit.refused"


def refuse_job(*, db_session: Session, redis_client, database: Database, job_id: str,
               unit: str, refusal: Problem) -> None:
    """Stop a job whose unit the entitlement gate refused: the job fails with the reason, its
    units not yet done are not run (none reads a hospital system), and the refusal is
    audited (403, like the API's own refusals)."""
    job = db_session.get(Job, uuid.UUID(job_id))
    if job is None:
        return
    error = f"Refused before reading the hospital systems: {refusal.detail}"
    _transition(db_session, job.id, to="failed", allowed_from=("queued", "running"),
                finished_at=utcnow(), error=error)
    db_session.refresh(job)
    if job.status == "failed":  # not when a cancel got there first: its outcome stands
        for row in db_session.scalars(select(JobUnit).where(
                JobUnit.job_id == job.id, JobUnit.status.in_(("pending", "running")))):
            # A unit another worker is running right now finishes; the rest never start.
            if row.unit == unit or row.status == "pending":
                row.status, row.error = "failed", "refused: " + refusal.detail
    db_session.commit()
    client = db_session.get(Client, job.client_id) if job.client_id else None
    record_event(record=AuditRecord(
        request_id=job.request_id or "-", operation=REFUSED_OPERATION, outcome="denied",
        status_code=refusal.status, occurred_at=utcnow(), tenant_id=str(job.tenant_id),
        client_id=client.client_id if client else None, resource_type="jobs",
        target_system=",".join(JOB_PRODUCTS[job.type])), redis_client=redis_client,
        database=database)
    logger.warning("job refused by the entitlement gate: %s", refusal.problem_type,
                   extra={"job_id": job_id})


def dead_letter_unit(*, db_session: Session, job_id: str, unit: str, task_name: str,
                     attempts: int, error: str) -> None:
    """Record a unit that exhausted its retries: the unit fails, a dead letter keeps what an
    operator needs to replay it (ids and a PHI-free error)."""
    row = _unit_row(db_session, job_id, unit)
    job = db_session.get(Job, uuid.UUID(job_id))
    if row is None or job is None:
        return
    row.status, row.error = "failed", error
    db_session.add(DeadLetter(task_name=task_name, tenant_id=job.tenant_id, job_id=job.id,
                              unit=unit, attempts=attempts, error=error, status="open"))
    db_session.commit()
    logger.warning("unit dead-lettered after %s attempts: %s", attempts, error)


def merge_job(*, db_session: Session, settings: Settings, job_id: str) -> str:
    """Finish the job once no unit is pending: store the merged, checked result (succeeded),
    or name the failed units (failed). Returns the job's status afterwards."""
    job = db_session.get(Job, uuid.UUID(job_id))
    if job is None:
        return "missing"
    if job.status in ("succeeded", "cancelled"):
        return job.status
    units = list(db_session.scalars(select(JobUnit).where(JobUnit.job_id == job.id)))
    if any(unit.status in ("pending", "running") for unit in units):
        return job.status  # a replayed or late unit will merge again when it finishes
    failed = sorted(unit.unit for unit in units if unit.status == "failed")
    now = utcnow()
    if failed:
        _transition(db_session, job.id, to="failed", allowed_from=("queued", "running"),
                    finished_at=now, error=(
                        f"{len(failed)} of {len(units)} units failed after retries "
                        f"({', '.join(failed)}); replay their dead letters to finish the job"))
        db_session.commit()
        db_session.refresh(job)
        return job.status
    if any(unit.status != "done" for unit in units):
        return job.status  # cancelled units: the cancel decided the job's outcome
    if any(unit.partial is None for unit in units):
        _transition(db_session, job.id, to="failed", allowed_from=("queued", "running"),
                    finished_at=now, error="the job's working data has passed its retention; "
                                           "submit the job again")
        db_session.commit()
        db_session.refresh(job)
        return job.status
    result = MERGERS[job.type]((unit.partial for unit in units), params=job.params)
    result["window"] = job.params["window"]
    assert_phi_free(result)
    stored = db_session.get(JobResult, job.id)
    expires = now + timedelta(hours=settings.hub_job_result_retention_hours)
    if stored is None:
        db_session.add(JobResult(job_id=job.id, result=result, expires_at=expires))
    else:
        stored.result, stored.expires_at = result, expires
    if not _transition(db_session, job.id, to="succeeded", allowed_from=("queued", "running"),
                       finished_at=now, error=None, units_done=len(units)):
        db_session.rollback()  # cancelled while merging: the result is not kept
    db_session.commit()
    db_session.refresh(job)
    return job.status


def fail_job(*, db_session: Session, job_id: str, error: str) -> None:
    """Mark a job failed for an unexpected reason (PHI-free error)."""
    _transition(db_session, uuid.UUID(job_id), to="failed", allowed_from=("queued", "running"),
                finished_at=utcnow(), error=error)
    db_session.commit()


# --- dead letters ------------------------------------------------------------------------

def list_dead_letters(*, db_session: Session, tenant_id: str | None, status: str | None = "open"
                      ) -> list[DeadLetter]:
    """Return dead letters (of one tenant, or all for the CLI), newest first."""
    query = select(DeadLetter)
    if tenant_id:
        query = query.where(DeadLetter.tenant_id == uuid.UUID(tenant_id))
    if status:
        query = query.where(DeadLetter.status == status)
    return list(db_session.scalars(query.order_by(DeadLetter.created_at.desc())))


def prepare_replay(*, db_session: Session, settings: Settings, tenant_id: str | None,
                   dead_letter_id: str) -> DeadLetter:
    """Mark a dead letter replayed, its unit pending again and its task in the outbox (one
    transaction); the caller sends it."""
    try:
        letter = db_session.get(DeadLetter, uuid.UUID(dead_letter_id))
    except ValueError:
        letter = None
    if letter is None or (tenant_id and letter.tenant_id != uuid.UUID(tenant_id)):
        raise Problem("No such dead letter.", status=404)
    if letter.job_id is None or letter.unit is None:
        raise Problem("This dead letter is not of a job unit; it cannot be replayed.", status=409,
                      problem_type="dead-letter-not-replayable")
    if letter.status != "open":
        raise Problem("This dead letter was already replayed.", status=409,
                      problem_type="dead-letter-replayed")
    job = db_session.get(Job, letter.job_id)
    # A replay reads the hospital systems again: the same gate as a new request, asked of the
    # database (a revocation must not wait for this process's memory to expire).
    require_entitlement(db_session=db_session, tenant_id=str(job.tenant_id),
                        products=JOB_PRODUCTS[job.type], client_pk=job.client_id,
                        remembered=False)
    if job.status == "cancelled":
        raise Problem("The job was cancelled.", status=409, problem_type="job-finished")
    row = _unit_row(db_session, str(letter.job_id), letter.unit)
    row.status, row.attempts, row.error = "pending", 0, None
    _transition(db_session, job.id, to="running", allowed_from=("failed", "running"),
                finished_at=None, error=None)
    letter.status, letter.replayed_at = "replayed", utcnow()
    # The unit's task commits with the replay (the transactional outbox).
    _add_outbox_message(db_session, settings, task_name=dispatch.RUN_JOB_UNIT, job_id=job.id,
                        unit=letter.unit)
    db_session.commit()
    return letter


def replay_dead_letter(*, db_session: Session, settings: Settings, tenant_id: str | None,
                       dead_letter_id: str) -> DeadLetter:
    """Replay a dead-lettered unit (checked, recorded, sent): the one replay flow of the API
    and the CLI (``tenant_id`` None: any tenant's, for operators). A broker that is down
    leaves the unit's task to the outbox dispatcher."""
    letter = prepare_replay(db_session=db_session, settings=settings, tenant_id=tenant_id,
                            dead_letter_id=dead_letter_id)
    send_job_messages(db_session=db_session, settings=settings, job_id=letter.job_id)
    return letter


def jobs_awaiting_merge(*, db_session: Session, idle_seconds: int) -> list[tuple[str, str]]:
    """Return (job id, tenant slug) of running jobs with no unit left to run whose last unit
    finished over ``idle_seconds`` ago: their chord body was lost (a known Redis-backend
    failure mode), and merging again is safe because merging is idempotent. The slug lets the
    re-sent merge's log lines name the tenant."""
    cutoff = utcnow() - timedelta(seconds=idle_seconds)
    unfinished = select(JobUnit.job_id).where(JobUnit.status.in_(("pending", "running")))
    recent = select(JobUnit.job_id).where(JobUnit.updated_at > cutoff)
    rows = db_session.execute(select(Job.id, Tenant.slug).join(Tenant, Tenant.id == Job.tenant_id)
                              .where(Job.status == "running", Job.id.not_in(unfinished),
                                     Job.id.not_in(recent)))
    return [(str(job_id), slug) for job_id, slug in rows]


# --- orphaned work -----------------------------------------------------------------------------

# The previous look of the orphan reconciler (Redis): what it suspected, and when.
ORPHAN_SUSPECTS_KEY = "hub:jobs:orphan-suspects"
# A suspicion is confirmed by a second look at least this long after the first (a slow
# worker's reply, a message between queue and worker) and at most the TTL after it.
ORPHAN_CONFIRM_MIN_SECONDS = 5
ORPHAN_SUSPECTS_TTL_SECONDS = 180
ORPHAN_CHECK_LOCK_KEY = "hub:jobs:orphan-check-lock"
# Longer than one check takes (three inspections of at most 2 s each, a few queries).
ORPHAN_CHECK_LOCK_SECONDS = 60


@dataclass(frozen=True)
class OrphanSuspect:
    """A piece of a running job's work that no live worker holds: a unit, or a queued job's
    plan (``unit`` None)."""

    job_id: str
    unit: str | None

    @property
    def key(self) -> str:
        return f"{self.job_id}:{self.unit or ''}"


def orphan_suspects(*, db_session: Session, settings: Settings, holdings: dispatch.WorkerHoldings,
                    idle_queues: frozenset[str]) -> set[OrphanSuspect]:
    """Return the work that looks orphaned now (:func:`redispatch_orphans` re-sends it once a
    second look agrees):

    - a unit ``running`` (a worker began it) of a running job, quiet for the grace period,
      that no live worker holds (running, reserved, or waiting out a retry's countdown);
    - a unit ``pending`` of a running job, quiet as long, held by no worker while nothing
      waits in the io queue (so it is not merely queued behind other work);
    - a ``queued`` job, older than the grace period, whose plan was sent but which no worker
      holds while nothing waits in the compute queue.

    Work whose task still waits in the outbox is the dispatcher's, not an orphan."""
    cutoff = utcnow() - timedelta(seconds=settings.hub_orphan_grace_seconds)
    unsent = {(job_id, unit) for job_id, unit in db_session.execute(
        select(OutboxMessage.job_id, OutboxMessage.unit).where(OutboxMessage.sent_at.is_(None)))}
    suspects: set[OrphanSuspect] = set()
    rows = db_session.execute(
        select(JobUnit.job_id, JobUnit.unit, JobUnit.status).join(Job, Job.id == JobUnit.job_id)
        .where(Job.status == "running", JobUnit.status.in_(("pending", "running")),
               JobUnit.updated_at < cutoff))
    for job_id, unit, status in rows:
        if (job_id, unit) in unsent or holdings.holds(dispatch.RUN_JOB_UNIT, (str(job_id), unit)):
            continue
        if status == "pending" and "io" not in idle_queues:
            continue
        suspects.add(OrphanSuspect(str(job_id), unit))
    if "compute" in idle_queues:
        for job_id in db_session.scalars(select(Job.id).where(Job.status == "queued",
                                                                Job.created_at < cutoff)):
            if any(key[0] == job_id for key in unsent) or holdings.holds(
                    dispatch.PLAN_JOB, (str(job_id),)):
                continue
            suspects.add(OrphanSuspect(str(job_id), None))
    return suspects


def _previous_look(redis_client) -> tuple[float, set[str]] | None:
    stored = redis_client.get(ORPHAN_SUSPECTS_KEY)
    if not stored:
        return None
    look = json.loads(stored)
    return look["at"], set(look["suspects"])


def redispatch_orphans(*, db_session: Session, redis_client, settings: Settings,
                       now: float) -> dict:
    """The orphan reconciler: re-send, through the outbox, each unit (or plan) that no live
    worker held in this look and the previous one (a killed worker's, or one whose task was
    lost while the database was down). A unit re-sent this way counts as a delivery
    (``HUB_UNIT_MAX_DELIVERIES``) and merges its job after it; a job whose units are all
    finished is merged by :func:`jobs_awaiting_merge`'s reconciler.

    When no worker answers at all nothing is decided (nobody can tell a dead worker from a
    busy one); the look is not recorded either. Returns counts."""
    # One check at a time (two maintenance workers, a slow inspection): two overlapping
    # checks would both confirm the same suspects and send them twice.
    if not redis_client.set(ORPHAN_CHECK_LOCK_KEY, "1", nx=True, ex=ORPHAN_CHECK_LOCK_SECONDS):
        return {"workers": 0, "suspects": 0, "redispatched": 0}
    try:
        return _redispatch_orphans(db_session=db_session, redis_client=redis_client,
                                   settings=settings, now=now)
    finally:
        redis_client.delete(ORPHAN_CHECK_LOCK_KEY)


def _redispatch_orphans(*, db_session: Session, redis_client, settings: Settings,
                        now: float) -> dict:
    look = _previous_look(redis_client)
    if look is not None and now - look[0] < ORPHAN_CONFIRM_MIN_SECONDS:
        # Too soon after the last look (two checks sent at once) to count as a second one.
        return {"workers": 0, "suspects": 0, "redispatched": 0}
    previous = look[1] if look is not None else set()
    holdings = dispatch.worker_holdings(broker_url=settings.celery_broker_url)
    if holdings is None:
        logger.warning("orphan check skipped: no worker (or not every one) answered the "
                       "inspection")
        return {"workers": 0, "suspects": 0, "redispatched": 0}
    idle = dispatch.idle_queues(("io", "compute"), broker_url=settings.celery_broker_url)
    suspects = orphan_suspects(db_session=db_session, settings=settings, holdings=holdings,
                               idle_queues=idle)
    confirmed = [suspect for suspect in suspects if suspect.key in previous]
    redispatched = []
    for suspect in confirmed:
        job_uuid = uuid.UUID(suspect.job_id)
        if suspect.unit is None:
            task_name = dispatch.PLAN_JOB
        else:
            task_name = dispatch.RUN_JOB_UNIT
            # Pending again and quiet from now: the re-sent task gets a new grace period, and
            # while it waits in a busy queue it is not suspected (and sent) again.
            row = _unit_row(db_session, suspect.job_id, suspect.unit)
            row.status, row.updated_at = "pending", utcnow()
        _add_outbox_message(db_session, settings, task_name=task_name, job_id=job_uuid,
                            unit=suspect.unit)
        redispatched.append((suspect, task_name))
    db_session.commit()
    for suspect, task_name in redispatched:
        send_job_messages(db_session=db_session, settings=settings,
                          job_id=uuid.UUID(suspect.job_id))
        JOB_TASKS_REDISPATCHED.labels(task="plan" if suspect.unit is None else "unit").inc()
        logger.warning("orphaned job task re-dispatched (no live worker held it)",
                       extra={"job_id": suspect.job_id, "unit": suspect.unit,
                              "task_name": task_name})
    remaining = sorted(suspect.key for suspect in suspects if suspect.key not in previous)
    redis_client.set(ORPHAN_SUSPECTS_KEY, json.dumps({"at": now, "suspects": remaining}),
                     ex=ORPHAN_SUSPECTS_TTL_SECONDS)
    return {"workers": len(holdings.workers), "suspects": len(suspects),
            "redispatched": len(redispatched)}


# --- the outbox ------------------------------------------------------------------------------

def _add_outbox_message(db_session: Session, settings: Settings, *, task_name: str,
                        job_id: uuid.UUID, unit: str | None = None) -> None:
    # The caller sends it at once after its commit; the dispatcher takes it only once it has
    # waited the grace period, so the two do not both send a healthy submission's task.
    db_session.add(OutboxMessage(task_name=task_name, job_id=job_id, unit=unit,
                                 next_attempt_at=utcnow() + timedelta(
                                     seconds=settings.hub_outbox_grace_seconds)))


def _outbox_backoff(settings: Settings, attempts: int) -> float:
    """Seconds before the next attempt: doubling from 1 s, with jitter, capped."""
    return min(settings.hub_outbox_retry_max_seconds,
               random.uniform(0.5, 1.0) * 2 ** min(attempts - 1, 16))


def _send_message(db_session: Session, settings: Settings, message: OutboxMessage) -> bool:
    """Hand one outbox message to the broker and record the outcome; False if it is down."""
    message.attempts += 1
    try:
        if message.task_name == dispatch.RUN_JOB_UNIT:
            dispatch.replay_unit(job_id=str(message.job_id), unit=message.unit,
                                 broker_url=settings.celery_broker_url)
        else:
            dispatch.submit_job_pipeline(job_id=str(message.job_id),
                                         broker_url=settings.celery_broker_url)
    except dispatch.BROKER_ERRORS as failure:
        message.last_error = type(failure).__name__
        message.next_attempt_at = utcnow() + timedelta(
            seconds=_outbox_backoff(settings, message.attempts))
        db_session.commit()
        logger.warning("job task not sent (broker unreachable); the outbox dispatcher will "
                       "send it", extra={"job_id": str(message.job_id)})
        return False
    # Sent twice at worst (this process dies before this commit): the plan and the unit
    # tasks are idempotent, so a second delivery changes nothing.
    message.sent_at, message.last_error = utcnow(), None
    db_session.commit()
    return True


def send_job_messages(*, db_session: Session, settings: Settings, job_id: uuid.UUID) -> int:
    """Send the job's outbox messages not yet sent, now (after a submission, a replay, or a
    re-post of a job whose plan never reached the broker). Returns how many were sent."""
    messages = list(db_session.scalars(select(OutboxMessage).where(
        OutboxMessage.job_id == job_id, OutboxMessage.sent_at.is_(None))
        .order_by(OutboxMessage.created_at)))
    sent = 0
    for message in messages:
        if not _send_message(db_session, settings, message):
            break
        sent += 1
    return sent


def dispatch_pending(*, db_session: Session, settings: Settings) -> dict:
    """The outbox dispatcher: send every due message the broker has not acknowledged, oldest
    first; stop at the first broker error (the rest wait for the next run). Each message is
    claimed first (its next attempt moved on), so two dispatchers do not send it together.
    Returns counts."""
    now = utcnow()
    due = list(db_session.scalars(select(OutboxMessage.id).where(
        OutboxMessage.sent_at.is_(None), OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.created_at).limit(OUTBOX_BATCH)))
    sent = failed = 0
    for message_id in due:
        claimed = db_session.execute(update(OutboxMessage).where(
            OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None),
            OutboxMessage.next_attempt_at <= now).values(
            next_attempt_at=now + timedelta(seconds=settings.hub_outbox_grace_seconds))
            .execution_options(synchronize_session=False)).rowcount
        db_session.commit()
        if not claimed:
            continue
        message = db_session.get(OutboxMessage, message_id)
        db_session.refresh(message)
        if _send_message(db_session, settings, message):
            sent += 1
        else:
            failed += 1
            break
    waiting = db_session.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.sent_at.is_(None)))
    return {"sent": sent, "failed": failed, "waiting": waiting}
