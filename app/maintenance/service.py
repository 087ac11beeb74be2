"""The retention purge: expired job results, expired idempotency keys (and the sent outbox
messages of their jobs), finished jobs' unit partials and snapshot movements of containers
System A no longer lists (temporary data), old sync runs, events (with their webhook
deliveries) past the event retention once nothing of theirs is still to be sent, and audit
events older than the audit retention.

Each run returns a report counting what each step removed (kept as the run's report in
``sync_runs``, see app.syncs); nothing that has not expired is touched.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.orm import Session

from app.audit.chain import purge_before
from app.database import utcnow
from app.events.models import Delivery, Event
from app.jobs.models import Job, JobResult, JobUnit, OutboxMessage
from app.snapshots.models import SnapshotContainer, SnapshotMovement
from app.syncs.models import SyncRun

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class PurgeReport:
    """What one purge removed, per kind of data."""

    started_at: str
    job_results: int
    idempotency_keys: int
    unit_partials: int
    snapshot_movements: int
    sync_runs: int
    events: int
    audit_events: int
    outbox_messages: int = 0

    def as_report(self) -> dict:
        return asdict(self)


def purge_expired(*, db_session: Session, audit_retention_days: int,
                  sync_run_retention_days: int = 30, event_retention_days: int = 30,
                  now: datetime | None = None) -> PurgeReport:
    """Remove what has passed its retention as of ``now`` and report the counts."""
    now = now or utcnow()
    expired_results = db_session.execute(
        delete(JobResult).where(JobResult.expires_at < now)
        .execution_options(synchronize_session=False)).rowcount
    # A key past its retention no longer names its job (the job row and its status stay).
    released_keys = db_session.execute(
        update(Job).where(Job.expires_at < now, Job.idempotency_key.is_not(None))
        .values(idempotency_key=None).execution_options(synchronize_session=False)).rowcount
    # A sent outbox message past its job's key retention has done its work; an unsent one is
    # a promise still to keep and stays, however old.
    sent_messages = db_session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.sent_at.is_not(None),
            OutboxMessage.job_id.in_(select(Job.id).where(Job.expires_at < now)))
        .execution_options(synchronize_session=False)).rowcount
    # Unit partials are working data: a succeeded or cancelled job without a (kept) result has
    # no reader left for them. A failed job keeps them until its retention passes, because a
    # replay of its dead letters merges them.
    finished_without_result = select(Job.id).where(
        ((Job.status.in_(("succeeded", "cancelled"))) & Job.id.not_in(select(JobResult.job_id)))
        | ((Job.status == "failed") & (Job.expires_at < now)))
    cleared_partials = db_session.execute(
        update(JobUnit).where(JobUnit.job_id.in_(finished_without_result),
                              JobUnit.partial.is_not(None))
        .values(partial=None).execution_options(synchronize_session=False)).rowcount
    # A movement outlives its container in the snapshot only when System A stopped listing the
    # container: no origin answer can use it any more.
    orphaned_movements = db_session.execute(
        delete(SnapshotMovement).where(~exists().where(and_(
            SnapshotContainer.tenant_id == SnapshotMovement.tenant_id,
            SnapshotContainer.container_id == SnapshotMovement.container_id)))
        .execution_options(synchronize_session=False)).rowcount
    # Runs still going are never removed (their outcome is still to be written).
    old_runs = db_session.execute(
        delete(SyncRun).where(SyncRun.started_at < now - timedelta(days=sync_run_retention_days),
                              SyncRun.outcome != "running")
        .execution_options(synchronize_session=False)).rowcount
    # An event still being delivered (or retried) stays until its deliveries are final;
    # dead-lettered deliveries go with their event, replayable until then.
    unsent = select(Delivery.event_id).where(Delivery.status.in_(("pending", "sending")))
    old_events = select(Event.id).where(
        Event.recorded_at < now - timedelta(days=event_retention_days), Event.id.not_in(unsent))
    db_session.execute(delete(Delivery).where(Delivery.event_id.in_(old_events))
                       .execution_options(synchronize_session=False))
    purged_events = db_session.execute(
        delete(Event).where(Event.id.in_(old_events))
        .execution_options(synchronize_session=False)).rowcount
    db_session.commit()
    audit_events = purge_before(db_session, now - timedelta(days=audit_retention_days))
    report = PurgeReport(started_at=now.isoformat(), job_results=expired_results,
                         idempotency_keys=released_keys, unit_partials=cleared_partials,
                         snapshot_movements=orphaned_movements, sync_runs=old_runs,
                         events=purged_events, audit_events=audit_events,
                         outbox_messages=sent_messages)
    logger.info("retention purge done", extra={"report": asdict(report)})
    return report

