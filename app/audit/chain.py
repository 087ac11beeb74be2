"""The tamper-evident chain of the audit table: the one write path into it, its verification and
the retention purge.

Each row's ``row_hash`` is sha256(previous row's ``row_hash`` + the row's canonical JSON), the
first row starting from ``GENESIS_HASH``. Editing a row changes its hash; deleting one leaves the
next row pointing at a hash that is no longer there. Appends must therefore be serialized: every
writer (the drainer and the API's fallback when Redis is down) goes through ``append_records``,
which takes the chain lock of the database before reading the last hash.

The database adds its own guard (migration 0002): UPDATE is refused by a trigger. On PostgreSQL
DELETE is refused too, except inside ``purge_before``, which sets ``hub.audit_retention_purge``
for its transaction. SQLite has no session settings to tell a purge apart, so DELETE is not
blocked there; the chain still shows a row deleted from the middle.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.audit.records import AuditRecord

GENESIS_HASH = "0" * 64
RETENTION_PURGE_SETTING = "hub.audit_retention_purge"
# One advisory-lock key shared by every writer of the chain ("hubaudit" read as an integer).
CHAIN_LOCK_KEY = int.from_bytes(b"hubaudit", "big") & 0x7FFF_FFFF_FFFF_FFFF
VERIFY_BATCH_SIZE = 1000

logger = logging.getLogger(__name__)


def chain_hash(prev_hash: str, record: AuditRecord) -> str:
    """Return the hash of ``record`` following a row whose hash is ``prev_hash``."""
    return hashlib.sha256((prev_hash + record.to_json()).encode("ascii")).hexdigest()


def lock_chain(db_session: Session) -> None:
    """Hold the chain's write lock until the session's transaction ends."""
    dialect = db_session.get_bind().dialect.name
    if dialect == "postgresql":
        db_session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    elif dialect == "sqlite":
        # SQLite has one write lock per database, but the driver opens a transaction only at the
        # first write: a writer would read the last hash before holding the lock. A write that
        # matches no row takes the lock now (waiting up to busy_timeout), so the last hash read
        # next stays the last until commit.
        db_session.execute(text("DELETE FROM audit_events WHERE 1 = 0"))
    else:
        raise NotImplementedError(f"the audit chain has no write lock on {dialect}")


def append_records(*, db_session: Session, records: Iterable[AuditRecord]) -> int:
    """Link ``records`` onto the chain in order, skipping events already stored; return how many
    rows were added. The caller commits (which releases the chain lock)."""
    records = list({record.event_id: record for record in records}.values())
    if not records:
        return 0
    lock_chain(db_session)
    stored = set(db_session.scalars(select(AuditEvent.event_id).where(
        AuditEvent.event_id.in_([uuid.UUID(record.event_id) for record in records]))))
    prev_hash = db_session.scalar(
        select(AuditEvent.row_hash).order_by(AuditEvent.id.desc()).limit(1)) or GENESIS_HASH
    added = 0
    for record in records:
        if uuid.UUID(record.event_id) in stored:
            continue
        row_hash = chain_hash(prev_hash, record)
        db_session.add(record.to_row(prev_hash=prev_hash, row_hash=row_hash))
        prev_hash = row_hash
        added += 1
    # Flush now so the ids follow the chain order on every database.
    db_session.flush()
    return added


@dataclass(frozen=True)
class ChainReport:
    """The outcome of checking the chain.

    ``anchor`` is the ``prev_hash`` the oldest remaining row starts from: ``GENESIS_HASH`` until a
    retention purge, then the hash of the last purged row (which the purge logs). Rows removed
    from the oldest end cannot be told from a purge by the chain alone.
    """

    ok: bool
    rows_checked: int
    first_broken_id: int | None
    anchor: str | None = None


def verify_rows(rows: Iterable[tuple[int, str, str, AuditRecord]]) -> ChainReport:
    """Check ``(id, prev_hash, row_hash, record)`` tuples in chain order."""
    checked = 0
    anchor = expected_prev = None
    for row_id, prev_hash, row_hash, record in rows:
        if anchor is None:
            anchor = expected_prev = prev_hash
        checked += 1
        if prev_hash != expected_prev or row_hash != chain_hash(prev_hash, record):
            return ChainReport(ok=False, rows_checked=checked, first_broken_id=row_id,
                               anchor=anchor)
        expected_prev = row_hash
    return ChainReport(ok=True, rows_checked=checked, first_broken_id=None, anchor=anchor)


def verify_chain(db_session: Session) -> ChainReport:
    """Recompute every row's hash in id order and report the first row that does not fit."""
    rows = db_session.scalars(select(AuditEvent).order_by(AuditEvent.id)
                              .execution_options(yield_per=VERIFY_BATCH_SIZE))
    return verify_rows((row.id, row.prev_hash, row.row_hash, AuditRecord.from_row(row))
                       for row in rows)


def purge_before(db_session: Session, cutoff: datetime) -> int:
    """Delete the events that occurred before ``cutoff`` (the retention purge) and commit;
    return how many were deleted.

    Only the oldest stretch of the chain goes: rows up to the first one at or after ``cutoff``.
    Ids follow the order events were written, not exactly their times, and deleting an old row
    from between newer ones would break the chain.
    """
    cutoff = cutoff.astimezone(UTC)
    lock_chain(db_session)
    if db_session.get_bind().dialect.name == "postgresql":
        # SET LOCAL: the trigger lets DELETE through for this transaction only.
        db_session.execute(text(f"SET LOCAL {RETENTION_PURGE_SETTING} = 'on'"))
    first_kept = db_session.scalar(
        select(AuditEvent.id).where(AuditEvent.occurred_at >= cutoff)
        .order_by(AuditEvent.id).limit(1))
    purged = delete(AuditEvent).execution_options(synchronize_session=False)
    if first_kept is not None:
        purged = purged.where(AuditEvent.id < first_kept)
    deleted = db_session.execute(purged).rowcount
    anchor = db_session.scalar(select(AuditEvent.prev_hash).order_by(AuditEvent.id).limit(1))
    db_session.commit()
    # The new anchor is what verify_chain reports from now on; logging it keeps it comparable.
    logger.info("audit events purged", extra={"deleted": deleted, "cutoff": cutoff.isoformat(),
                                              "chain_anchor": anchor})
    return deleted
