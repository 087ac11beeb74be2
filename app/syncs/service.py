"""Sync schedules and runs: which syncs exist, how each is scheduled, running one (single
flight), and what operators see of them.

The database holds what operators decided (override schedule, enabled) and every run's
outcome; ``app.syncs.beat`` mirrors the enabled schedules into beat's Redis schedule. A run
takes a Redis lock per schedule: a run that finds the previous one still going is recorded as
skipped and counted, never queued behind it.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import redis
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import LockError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from app.canonical.times import to_utc
from app.connectors.base import MAPPING_ERRORS
from app.connectors.credentials import CredentialUnavailable
from app.connectors.resilience import DownstreamRejected, DownstreamUnavailable
from app.connectors.routing import NotConnected
from app.database import utcnow
from app.entitlements.service import tenant_owns_product
from app.jobs import dispatch
from app.observability.context import enter_tenant
from app.phi.boundary import UnsafeResult, assert_phi_free
from app.phi.redaction import scrub
from app.problems import Problem
from app.settings import Settings
from app.syncs import beat
from app.syncs.kinds import REPORT_FIELDS, SYNC_KINDS, SyncKind
from app.syncs.models import HUB_SCOPE, SyncRun, SyncSchedule
from app.syncs.specs import InvalidSchedule, described, normalized, parse_schedule
from app.tenants.models import Connection, Product, Tenant

logger = logging.getLogger(__name__)

LOCK_PREFIX = "hub:sync-lock:"
RECENT_RUNS = 20


@dataclass(frozen=True)
class ActiveSync:
    """A schedule that applies now, with its kind and tenant (None: hub-wide)."""

    schedule: SyncSchedule
    kind: SyncKind
    tenant: Tenant | None

    @property
    def entry_name(self) -> str:
        owner = self.tenant.slug if self.tenant else HUB_SCOPE
        return f"{beat.ENTRY_PREFIX}{self.kind.name}:{owner}"

    def spec(self, settings: Settings) -> str:
        return self.schedule.schedule or getattr(settings, self.kind.default_setting)


# --- which syncs exist ---------------------------------------------------------------------

def _connected_products(db_session: Session, tenant: Tenant) -> set[str]:
    """Products the tenant is entitled to and actively connected to."""
    codes = db_session.scalars(
        select(Product.code).join(Connection, Connection.product_id == Product.id).where(
            Connection.tenant_id == tenant.id, Connection.is_active.is_(True)))
    return {code for code in codes
            if tenant_owns_product(db_session=db_session, tenant_id=str(tenant.id),
                                   product=code)}


def _applies(kind: SyncKind, products: set[str]) -> bool:
    return kind.product in products if kind.product else bool(products)


def _wanted_scopes(db_session: Session, tenant_id: uuid.UUID | None = None, *,
                   hub_wide_only: bool = False) -> list[tuple[SyncKind, Tenant | None]]:
    wanted: list[tuple[SyncKind, Tenant | None]] = [
        (kind, None) for kind in SYNC_KINDS.values() if kind.hub_wide]
    if hub_wide_only:
        return wanted
    query = select(Tenant).where(Tenant.is_active.is_(True)).order_by(Tenant.slug)
    if tenant_id is not None:
        query = query.where(Tenant.id == tenant_id)
    for tenant in db_session.scalars(query):
        products = _connected_products(db_session, tenant)
        wanted += [(kind, tenant) for kind in SYNC_KINDS.values()
                   if not kind.hub_wide and _applies(kind, products)]
    return wanted


def _scope(tenant: Tenant | None) -> str:
    return str(tenant.id) if tenant else HUB_SCOPE


def active_syncs(*, db_session: Session, tenant_id: str | None = None,
                 hub_wide: bool = False, create_missing: bool = False) -> list[ActiveSync]:
    """The syncs that apply now (all; one tenant's plus the hub-wide ones; or, ``hub_wide``,
    only the hub-wide ones), in a stable order. With ``create_missing``, schedules that apply
    but have no row yet get one that follows the defaults."""
    wanted = _wanted_scopes(db_session, uuid.UUID(tenant_id) if tenant_id else None,
                            hub_wide_only=hub_wide)
    rows = {(row.kind, row.scope): row for row in db_session.scalars(select(SyncSchedule))}
    if create_missing:
        missing = [(kind, tenant) for kind, tenant in wanted
                   if (kind.name, _scope(tenant)) not in rows]
        if missing:
            for kind, tenant in missing:
                db_session.add(SyncSchedule(kind=kind.name, scope=_scope(tenant),
                                            tenant_id=tenant.id if tenant else None))
            try:
                db_session.commit()
            except IntegrityError:
                # Another process created them at the same moment: theirs are as good.
                db_session.rollback()
            rows = {(row.kind, row.scope): row for row in db_session.scalars(select(SyncSchedule))}
    return [ActiveSync(rows[(kind.name, _scope(tenant))], kind, tenant)
            for kind, tenant in wanted if (kind.name, _scope(tenant)) in rows]


def apply_schedules(*, db_session: Session, settings: Settings) -> dict:
    """Create the schedules new tenants need and make beat's entries match the enabled ones."""
    syncs = active_syncs(db_session=db_session, create_missing=True)
    wanted = {sync.entry_name: beat.WantedEntry(task=sync.kind.task,
                                                schedule_id=str(sync.schedule.id),
                                                spec=sync.spec(settings))
              for sync in syncs if sync.schedule.enabled}
    changes = beat.write_entries(wanted)
    return {"schedules": len(syncs), "enabled": len(wanted), "added": changes.added,
            "changed": changes.changed, "removed": changes.removed}


def _find(db_session: Session, schedule_id: str, *, tenant_id: str | None = None
          ) -> ActiveSync:
    """The active sync with this id, visible to ``tenant_id`` (None: the hub's operators).
    Another tenant's sync is 404, like a missing one."""
    try:
        row = db_session.get(SyncSchedule, uuid.UUID(str(schedule_id)))
    except ValueError:
        row = None
    if row is None or (tenant_id is not None and row.tenant_id is not None
                       and str(row.tenant_id) != tenant_id):
        raise Problem("No such sync.", status=404)
    # Only the owner's syncs are worked out: a run must not scan every tenant.
    owner = str(row.tenant_id) if row.tenant_id is not None else None
    for sync in active_syncs(db_session=db_session, tenant_id=owner, hub_wide=owner is None):
        if sync.schedule.id == row.id:
            return sync
    raise Problem("No such sync.", status=404)


def sync_id_for(*, db_session: Session, kind: str, owner: str) -> str:
    """The id of the active ``kind`` sync of ``owner``: a tenant's slug, or ``hub``."""
    for sync in active_syncs(db_session=db_session):
        if sync.kind.name == kind and (sync.tenant.slug if sync.tenant else HUB_SCOPE) == owner:
            return str(sync.schedule.id)
    raise Problem(f"No active {kind} sync for {owner}.", status=404)


# --- running one ---------------------------------------------------------------------------

def _failure_message(kind: SyncKind, failure: BaseException) -> str:
    """A PHI-free sentence for a failed run (exception text may quote downstream data)."""
    system = kind.product or "hospital"
    if isinstance(failure, DownstreamUnavailable):
        return f"The {system} system is unavailable (it timed out, failed, or its circuit " \
               "breaker is open)."
    if isinstance(failure, (DownstreamRejected, *MAPPING_ERRORS)):
        return f"The {system} system gave an answer the hub cannot use."
    if isinstance(failure, (NotConnected, CredentialUnavailable)):
        return f"The tenant's {system} system is not connected (or its credential is missing)."
    if isinstance(failure, SoftTimeLimitExceeded):
        return "The run took longer than the task time limit and was stopped."
    if isinstance(failure, UnsafeResult):
        return "The run's report was refused: it was not PHI-free."
    if isinstance(failure, Problem):
        return scrub(failure.detail)
    if isinstance(failure, SQLAlchemyError):
        return "The hub's database refused the run's changes."
    return f"Unexpected error ({type(failure).__name__}); see the worker log."


def _record_skip(db_session: Session, schedule_id: uuid.UUID, task_id: str | None) -> SyncRun:
    now = utcnow()
    run = SyncRun(schedule_id=schedule_id, outcome="skipped", started_at=now, finished_at=now,
                  duration_ms=0, task_id=task_id)
    db_session.add(run)
    db_session.execute(update(SyncSchedule).where(SyncSchedule.id == schedule_id)
                       .values(skipped_runs=SyncSchedule.skipped_runs + 1))
    db_session.commit()
    return run


def run_sync(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
             schedule_id: str, task_id: str | None = None,
             lock_seconds: int | None = None) -> dict:
    """Run one sync now, unless its previous run is still going (then record a skip).

    Returns what the task returns: ids and the outcome, nothing else. A failure is recorded on
    the run (PHI-free) and the schedule's failure streak; the next run starts afresh.
    """
    try:
        sync = _find(db_session, schedule_id)
    except Problem:  # no such sync (any more)
        logger.info("sync run dropped: schedule gone or no longer applies",
                    extra={"schedule_id": str(schedule_id)})
        return {"schedule_id": str(schedule_id), "outcome": "dropped"}
    schedule = sync.schedule
    enter_tenant(sync.tenant.slug if sync.tenant else None)
    lock = redis_client.lock(f"{LOCK_PREFIX}{schedule.id}",
                             timeout=lock_seconds or settings.hub_task_time_limit + 60)
    if not lock.acquire(blocking=False):
        run = _record_skip(db_session, schedule.id, task_id)
        logger.warning("sync skipped: its previous run is still going",
                       extra={"sync": sync.kind.name, "schedule_id": str(schedule.id)})
        return {"schedule_id": str(schedule.id), "run_id": str(run.id), "outcome": "skipped"}
    try:
        return _run_locked(db_session, redis_client, settings, sync, task_id)
    finally:
        try:
            lock.release()
        except LockError:  # it outlived its timeout; another run may hold it by now
            logger.warning("sync lock expired before its run ended",
                           extra={"sync": sync.kind.name, "schedule_id": str(schedule.id)})


def _run_locked(db_session: Session, redis_client: redis.Redis, settings: Settings,
                sync: ActiveSync, task_id: str | None) -> dict:
    schedule_id = sync.schedule.id
    # Holding the lock means no run of this schedule is going: a "running" row left behind is
    # a run whose worker died (killed, out of memory) before it could record its outcome.
    db_session.execute(update(SyncRun).where(
        SyncRun.schedule_id == schedule_id, SyncRun.outcome == "running").values(
        outcome="failed", finished_at=utcnow(),
        error="The run stopped without recording an outcome (its worker died)."))
    run = SyncRun(schedule_id=schedule_id, outcome="running", started_at=utcnow(),
                  task_id=task_id)
    db_session.add(run)
    db_session.commit()
    run_id = run.id
    started = time.perf_counter()
    report, error, unexpected = None, None, None
    try:
        produced = sync.kind.run(db_session=db_session, redis_client=redis_client,
                                 settings=settings, tenant=sync.tenant)
        assert_phi_free(produced, "report", allowed_fields=REPORT_FIELDS)
        report, outcome = produced, "succeeded"
    except Exception as failure:  # noqa: BLE001 - every failure is recorded, then judged
        db_session.rollback()
        outcome, error = "failed", _failure_message(sync.kind, failure)
        expected = (DownstreamUnavailable, DownstreamRejected, NotConnected,
                    CredentialUnavailable, SoftTimeLimitExceeded, UnsafeResult, Problem,
                    *MAPPING_ERRORS)
        if not isinstance(failure, expected):
            unexpected = failure
    duration_ms = int((time.perf_counter() - started) * 1000)
    run = db_session.get(SyncRun, run_id)
    run.outcome, run.finished_at, run.duration_ms = outcome, utcnow(), duration_ms
    run.report, run.error = report, error
    streak = 0 if outcome == "succeeded" else SyncSchedule.consecutive_failures + 1
    db_session.execute(update(SyncSchedule).where(SyncSchedule.id == schedule_id)
                       .values(consecutive_failures=streak))
    db_session.commit()
    # A run that found nothing to do (every count 0: cache warming with no hot lookups) is
    # routine: an idle stack would log it every minute for every tenant.
    counted = {field: value for field, value in (report or {}).items()
               if isinstance(value, int | float)
               and (not sync.kind.notable or field in sync.kind.notable)}
    did_nothing = outcome == "succeeded" and not any(counted.values())
    log = logger.warning if outcome != "succeeded" else logger.debug if did_nothing \
        else logger.info
    log("sync run %s", outcome, extra={"sync": sync.kind.name, "schedule_id": str(schedule_id),
                                       "duration_ms": duration_ms})
    if unexpected is not None:
        raise unexpected
    return {"schedule_id": str(schedule_id), "run_id": str(run_id), "outcome": outcome}


# --- what operators see and change ---------------------------------------------------------

def _iso(moment: datetime | None) -> str | None:
    # The database hands back naive UTC on SQLite, aware UTC on PostgreSQL.
    return to_utc(moment).isoformat().replace("+00:00", "Z") if moment else None


def _run_view(run: SyncRun | None, *, with_report: bool) -> dict | None:
    if run is None:
        return None
    return {"id": str(run.id), "outcome": run.outcome, "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "duration_seconds": None if run.duration_ms is None else run.duration_ms / 1000,
            "error": run.error, "report": run.report if with_report else None}


def _latest_runs(db_session: Session, schedule_ids: list[uuid.UUID],
                 outcomes: tuple[str, ...]) -> dict[uuid.UUID, SyncRun]:
    """The latest run with one of ``outcomes`` of each schedule, in one query."""
    if not schedule_ids:
        return {}
    ranked = select(SyncRun.id, func.row_number().over(
        partition_by=SyncRun.schedule_id, order_by=SyncRun.started_at.desc()).label("rank")
    ).where(SyncRun.schedule_id.in_(schedule_ids), SyncRun.outcome.in_(outcomes)).subquery()
    runs = db_session.scalars(select(SyncRun).join(ranked, ranked.c.id == SyncRun.id)
                              .where(ranked.c.rank == 1))
    return {run.schedule_id: run for run in runs}


def _views(db_session: Session, settings: Settings, syncs: list[ActiveSync], *,
           viewer_tenant: bool, recent: bool = False) -> list[dict]:
    ids = [sync.schedule.id for sync in syncs]
    last = _latest_runs(db_session, ids, ("running", "succeeded", "failed"))
    last_success = _latest_runs(db_session, ids, ("succeeded",))
    due = beat.next_due([sync.entry_name for sync in syncs])
    return [_view(db_session, settings, sync, due.get(sync.entry_name), last.get(sync.schedule.id),
                  last_success.get(sync.schedule.id), viewer_tenant=viewer_tenant,
                  recent=recent) for sync in syncs]


def _status(sync: ActiveSync, last: SyncRun | None) -> str:
    if not sync.schedule.enabled:
        return "disabled"
    if last is None:
        return "never_run"
    return {"running": "running", "succeeded": "ok", "failed": "failing"}[last.outcome]


def _view(db_session: Session, settings: Settings, sync: ActiveSync, due: datetime | None,
          last: SyncRun | None, last_success: SyncRun | None, *, viewer_tenant: bool,
          recent: bool) -> dict:
    schedule = sync.schedule
    spec = sync.spec(settings)
    # A tenant's client sees hub-wide syncs' health, not their counts (which span tenants).
    with_report = not (viewer_tenant and sync.tenant is None)
    view = {
        "id": str(schedule.id), "sync": sync.kind.name,
        "scope": "hub" if sync.tenant is None else "tenant",
        "tenant": sync.tenant.slug if sync.tenant else None,
        "description": sync.kind.description, "task": sync.kind.task,
        "schedule": {"spec": spec, **described(spec), "customized": schedule.schedule is not None},
        "enabled": schedule.enabled, "status": _status(sync, last),
        "next_due_at": _iso(due) if schedule.enabled else None,
        "last_run": _run_view(last, with_report=with_report),
        "last_succeeded_at": _iso(last_success.finished_at) if last_success else None,
        "consecutive_failures": schedule.consecutive_failures,
        "skipped_runs": schedule.skipped_runs,
        "updated_at": _iso(schedule.updated_at), "updated_by": schedule.updated_by,
    }
    if recent:
        runs = db_session.scalars(select(SyncRun).where(SyncRun.schedule_id == schedule.id)
                                  .order_by(SyncRun.started_at.desc()).limit(RECENT_RUNS))
        view["recent_runs"] = [_run_view(run, with_report=with_report) for run in runs]
    return view


def list_syncs(*, db_session: Session, settings: Settings, tenant_id: str | None) -> list[dict]:
    """Every sync the viewer may see (a tenant: its own and the hub-wide ones; the hub's
    operators, ``tenant_id`` None: all), with schedule, last run, next due time and status."""
    syncs = active_syncs(db_session=db_session, tenant_id=tenant_id)
    return _views(db_session, settings, syncs, viewer_tenant=tenant_id is not None)


def get_sync(*, db_session: Session, settings: Settings, schedule_id: str,
             tenant_id: str | None) -> dict:
    """One sync as ``list_syncs`` shows it, with its most recent runs."""
    sync = _find(db_session, schedule_id, tenant_id=tenant_id)
    return _views(db_session, settings, [sync], viewer_tenant=tenant_id is not None, recent=True)[0]


_UNSET = object()


def update_sync(*, db_session: Session, settings: Settings, schedule_id: str,
                tenant_id: str | None, actor: str, schedule=_UNSET,
                enabled: bool | None = None) -> dict:
    """Change a sync's schedule (a spec; None returns to the default) and/or switch it on or
    off; beat follows within one loop. A tenant may change only its own syncs."""
    sync = _find(db_session, schedule_id, tenant_id=tenant_id)
    if tenant_id is not None and sync.tenant is None:
        raise Problem("Hub-wide syncs are changed by the hub's operators (see "
                      "docs/syncs.md).", status=403, problem_type="hub-wide-sync")
    row = sync.schedule
    if schedule is not _UNSET:
        if schedule is not None:
            try:
                parse_schedule(schedule, min_interval=settings.hub_sync_min_interval)
            except InvalidSchedule as invalid:
                raise Problem("The request has invalid fields; see errors.", status=422,
                              errors={"json": {"schedule": [str(invalid)]}}) from None
            schedule = normalized(schedule)
        row.schedule = schedule
    if enabled is not None:
        row.enabled = enabled
    row.updated_by = actor
    row.updated_at = utcnow()
    db_session.commit()
    try:
        apply_schedules(db_session=db_session, settings=settings)
    except redis.RedisError:
        # The change is recorded; the periodic apply (every minute) hands it to beat.
        logger.warning("sync change saved but not yet in beat's schedule: Redis unreachable",
                       extra={"schedule_id": str(row.id)})
    return get_sync(db_session=db_session, settings=settings, schedule_id=schedule_id,
                    tenant_id=tenant_id)


def trigger_sync(*, db_session: Session, schedule_id: str, tenant_id: str | None) -> dict:
    """Send a sync's task now; its single-flight lock still applies."""
    sync = _find(db_session, schedule_id, tenant_id=tenant_id)
    if tenant_id is not None and sync.tenant is None:
        raise Problem("Hub-wide syncs are run by the hub's operators (see "
                      "docs/syncs.md).", status=403, problem_type="hub-wide-sync")
    task_id = dispatch.run_sync_now(task_name=sync.kind.task, schedule_id=str(sync.schedule.id))
    return {"id": str(sync.schedule.id), "task_id": task_id}

