"""The retention purge: expired job results, expired idempotency keys, finished jobs' unit
partials (temporary data), and audit events older than the audit retention.

Each run returns a report counting what each step removed; nothing that has not expired is
touched.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.audit.chain import purge_before
from app.database import utcnow
from app.jobs.models import Job, JobResult, JobUnit

logger = logging.getLogger(__name__)

LAST_PURGE_KEY = "hub:maintenance:last-purge"


@dataclass(frozen=True)
class PurgeReport:
    """What one purge removed, per kind of data."""

    started_at: str
    job_results: int
    idempotency_keys: int
    unit_partials: int
    audit_events: int


def purge_expired(*, db_session: Session, audit_retention_days: int,
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
    db_session.commit()
    audit_events = purge_before(db_session, now - timedelta(days=audit_retention_days))
    report = PurgeReport(started_at=now.isoformat(), job_results=expired_results,
                         idempotency_keys=released_keys, unit_partials=cleared_partials,
                         audit_events=audit_events)
    logger.info("retention purge done", extra={"report": asdict(report)})
    return report


def remember_report(redis_client, report: PurgeReport) -> None:
    """Keep the last purge's report where operators (and the sync status view) can read it."""
    redis_client.set(LAST_PURGE_KEY, json.dumps(asdict(report)))
