"""The audit trail: queue an event per request, write queued events into the chain, list them.

The request path costs one Redis RPUSH (``record_event``); a SQL insert per request would cap the
API well below what a cached lookup can serve. ``write_pending_events`` moves the queue into the
``audit_events`` table in batches — from the beat task every few seconds, from ``flask hub audit
flush``, and before an admin lists events. When Redis cannot take an event, it is written to the
table at once instead, through the same chain lock.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from redis.exceptions import LockError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.chain import append_records
from app.audit.models import AuditEvent
from app.audit.records import AuditRecord
from app.database import Database, utcnow
from app.paging import CursorKind, decode_cursor, encode_cursor, integer
from app.phi.boundary import assert_phi_free

PENDING_KEY = "hub:audit:pending"
# Queue entries that could not be read back (written by something other than the hub): kept for
# an operator rather than dropped or retried forever.
UNREADABLE_KEY = "hub:audit:unreadable"
DRAIN_LOCK_KEY = "hub:audit:drain-lock"
LAST_WRITE_KEY = "hub:audit:last-write-at"
# A drainer that dies keeps the lock this long; each batch renews it.
DRAIN_LOCK_SECONDS = 60
DEFAULT_BATCH_SIZE = 500
# An admin listing events waits this long for a drain already running, then reads what is there.
LIST_DRAIN_WAIT_SECONDS = 5.0

# Trim a written batch off the queue only if the queue still starts with exactly that batch. A
# drainer that outlived its lock must not trim events another drainer has not written yet.
_TRIM_WRITTEN_BATCH = """
local size = tonumber(ARGV[1])
if redis.call('LINDEX', KEYS[1], 0) == ARGV[2] and redis.call('LINDEX', KEYS[1], size - 1) == ARGV[3] then
    redis.call('LTRIM', KEYS[1], size, -1)
    return 1
end
return 0
"""

# The fields of an event, as app.audit.records fixes them: the PHI check's allow-list.
AUDIT_FIELDS = frozenset(AuditRecord.__dataclass_fields__)

logger = logging.getLogger(__name__)


def record_event(*, record: AuditRecord, redis_client: redis.Redis, database: Database) -> None:
    """Queue ``record`` for the chain; if Redis cannot take it, write it to the table now.

    An event whose values are not PHI-free (an identifier-shaped value slipped into a field) is
    refused with ``UnsafeResult``: the audit trail is append-only, so PHI must never reach it."""
    assert_phi_free(record.to_dict(), "audit", allowed_fields=AUDIT_FIELDS)
    try:
        redis_client.rpush(PENDING_KEY, record.to_json())
        return
    except redis.RedisError as error:
        logger.warning("audit queue unreachable, writing the event to the database",
                       extra={"error": type(error).__name__, "event_id": record.event_id})
    db_session = database.new_session()
    try:
        append_records(db_session=db_session, records=[record])
        db_session.commit()
    finally:
        db_session.close()


def _read_batch(redis_client: redis.Redis, entries: list[str]) -> list[AuditRecord]:
    records = []
    for entry in entries:
        try:
            records.append(AuditRecord.from_json(entry))
        except (ValueError, TypeError, KeyError):
            redis_client.rpush(UNREADABLE_KEY, entry)
            logger.error("unreadable audit queue entry set aside", extra={"key": UNREADABLE_KEY})
    return records


def write_pending_events(*, redis_client: redis.Redis, db_session: Session,
                         batch_size: int = DEFAULT_BATCH_SIZE, wait_seconds: float = 0.0) -> int:
    """Move queued events into the audit table, oldest first; return how many rows were added.

    One drainer at a time (a Redis lock; with ``wait_seconds`` 0, return 0 at once if another is
    running). Each batch is committed before it leaves the queue, and events already stored are
    skipped, so a crash between the two neither loses nor duplicates an event.
    """
    lock = redis_client.lock(DRAIN_LOCK_KEY, timeout=DRAIN_LOCK_SECONDS)
    if not lock.acquire(blocking=wait_seconds > 0, blocking_timeout=wait_seconds or None):
        return 0
    trim = redis_client.register_script(_TRIM_WRITTEN_BATCH)
    written = 0
    try:
        while entries := redis_client.lrange(PENDING_KEY, 0, batch_size - 1):
            try:
                written += append_records(db_session=db_session,
                                          records=_read_batch(redis_client, entries))
                db_session.commit()
            except Exception:
                db_session.rollback()
                raise
            trim(keys=[PENDING_KEY], args=[len(entries), entries[0], entries[-1]])
            redis_client.set(LAST_WRITE_KEY, utcnow().isoformat())
            if len(entries) < batch_size:
                break
            try:
                lock.reacquire()
            except LockError:
                # The lock expired mid-drain and another drainer may hold it now: leave the
                # rest of the queue to that one.
                break
    finally:
        try:
            lock.release()
        except LockError:
            # The lock expired during a long batch; the trim guard kept the queue consistent.
            logger.warning("audit drain lock expired before release")
    return written


def pending_count(*, redis_client: redis.Redis) -> int:
    """Return how many events wait in the queue (an operator alerts when this keeps growing)."""
    return redis_client.llen(PENDING_KEY)


# The id of the last event of a page: a row id of the audit table (a 64-bit integer).
AUDIT_CURSOR = CursorKind("audit-events", {"before": integer(1, 2**63 - 1)})


@dataclass(frozen=True)
class AuditPage:
    """A page of events, newest first, and the cursor of the next page."""

    events: list[AuditRecord]
    next_cursor: str | None


def list_events(*, redis_client: redis.Redis, db_session: Session, tenant_id: str,
                since: datetime | None = None, until: datetime | None = None,
                operation: str | None = None, outcome: str | None = None,
                resource_type: str | None = None, client_id: str | None = None,
                request_id: str | None = None, cursor: str | None = None,
                cursor_key: str, page_size: int = 100) -> AuditPage:
    """Return one tenant's events matching every given filter, newest first, after writing the
    queued ones (so the page covers requests up to now)."""
    binding = {"key": cursor_key, "tenant_id": tenant_id, "query": {
        "since": since, "until": until, "operation": operation, "outcome": outcome,
        "resource_type": resource_type, "client_id": client_id, "request_id": request_id}}
    before_id = decode_cursor(AUDIT_CURSOR, cursor, **binding)["before"] if cursor else None
    try:
        write_pending_events(redis_client=redis_client, db_session=db_session,
                             wait_seconds=LIST_DRAIN_WAIT_SECONDS)
    except redis.RedisError as error:
        # Without Redis, new events go straight to the table: what is there is what exists.
        logger.warning("audit queue unreachable, listing stored events only",
                       extra={"error": type(error).__name__})
    query = select(AuditEvent).where(AuditEvent.tenant_id == uuid.UUID(tenant_id))
    for column, value in ((AuditEvent.operation, operation), (AuditEvent.outcome, outcome),
                          (AuditEvent.resource_type, resource_type),
                          (AuditEvent.client_id, client_id), (AuditEvent.request_id, request_id)):
        if value is not None:
            query = query.where(column == value)
    # In UTC: SQLite compares stored timestamps as text, without their offset.
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since.astimezone(UTC))
    if until is not None:
        query = query.where(AuditEvent.occurred_at < until.astimezone(UTC))
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    rows = list(db_session.scalars(query.order_by(AuditEvent.id.desc()).limit(page_size + 1)))
    page, more = rows[:page_size], len(rows) > page_size
    return AuditPage(events=[AuditRecord.from_row(row) for row in page],
                     next_cursor=encode_cursor(AUDIT_CURSOR, {"before": page[-1].id}, **binding)
                     if more else None)
