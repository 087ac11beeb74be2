"""The audit chain: linked hashes, verification, the database's append-only guard, the purge.

Tests that delete or tamper with rows work on a fresh database of their own (same kind as the
session's: SQLite or PostgreSQL), so the session's chain stays intact for every other test.
"""

import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit.chain import (
    GENESIS_HASH,
    RETENTION_PURGE_SETTING,
    ChainReport,
    append_records,
    chain_hash,
    purge_before,
    verify_chain,
    verify_rows,
)
from app.audit.models import AuditEvent
from app.audit.records import AuditRecord, outcome_for
from tests.fixtures.factories import AUDITED_AT, audit_record

T0 = AUDITED_AT  # when audit_record's events happen


def _append(engine, records) -> int:
    with Session(engine) as session:
        added = append_records(db_session=session, records=records)
        session.commit()
    return added


def _ids(engine) -> list[int]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)))


def _verify(engine):
    with Session(engine) as session:
        return verify_chain(session)


def _delete_row(engine, row_id: int) -> None:
    """Delete one row as someone with table rights would (allowed on SQLite; on PostgreSQL
    only with the purge setting)."""
    with Session(engine) as session:
        if engine.dialect.name == "postgresql":
            session.execute(text(f"SET LOCAL {RETENTION_PURGE_SETTING} = 'on'"))
        session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": row_id})
        session.commit()


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "success"), (204, "success"), (302, "success"), (401, "denied"), (403, "denied"),
    (404, "rejected"), (422, "rejected"), (429, "rejected"), (500, "error"), (503, "error")])
def test_outcome_follows_the_status_code(status, outcome):
    assert outcome_for(status) == outcome


def test_record_json_round_trips_and_hashes_the_same_after_storage(fresh_engine):
    record = audit_record(occurred_at=datetime(2026, 11, 24, 11, 30, 1, 123456,
                                               tzinfo=timezone(timedelta(hours=1))))
    assert AuditRecord.from_json(record.to_json()) == record

    _append(fresh_engine, [record])
    with Session(fresh_engine) as session:
        row = session.scalars(select(AuditEvent)).one()
        stored = AuditRecord.from_row(row)

    assert stored == record
    assert row.prev_hash == GENESIS_HASH
    assert row.row_hash == chain_hash(GENESIS_HASH, record)


def test_appended_rows_form_a_valid_chain(fresh_engine):
    records = [audit_record(occurred_at=T0 + timedelta(seconds=n)) for n in range(5)]

    assert _append(fresh_engine, records[:3]) == 3
    assert _append(fresh_engine, records[3:]) == 2

    with Session(fresh_engine) as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    assert [str(row.event_id) for row in rows] == [record.event_id for record in records]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.row_hash
               for earlier, later in zip(rows, rows[1:], strict=False))
    assert _verify(fresh_engine) == ChainReport(ok=True, rows_checked=5, first_broken_id=None,
                                            anchor=GENESIS_HASH)


def test_events_already_stored_are_skipped(fresh_engine):
    records = [audit_record() for _ in range(3)]
    _append(fresh_engine, records[:2])

    assert _append(fresh_engine, records + [records[0]]) == 1

    assert len(_ids(fresh_engine)) == 3
    assert _verify(fresh_engine).ok


def test_a_deleted_middle_row_breaks_the_chain_at_the_next_row(fresh_engine):
    _append(fresh_engine, [audit_record() for _ in range(5)])
    ids = _ids(fresh_engine)

    _delete_row(fresh_engine, ids[2])

    report = _verify(fresh_engine)
    assert (report.ok, report.first_broken_id, report.rows_checked) == (False, ids[3], 3)


def test_an_edited_field_is_reported_at_its_row(fresh_engine):
    _append(fresh_engine, [audit_record() for _ in range(4)])
    ids = _ids(fresh_engine)
    # Someone with DDL rights can switch the guard off; the chain still gives them away.
    with Session(fresh_engine) as session:
        if fresh_engine.dialect.name == "postgresql":
            session.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
        else:
            session.execute(text("DROP TRIGGER audit_events_no_update"))
        session.execute(text("UPDATE audit_events SET client_id = 'someone-else' WHERE id = :id"),
                        {"id": ids[1]})
        session.commit()

    report = _verify(fresh_engine)
    assert (report.ok, report.first_broken_id) == (False, ids[1])


def test_verify_rows_points_at_a_tampered_copy():
    records = [audit_record() for _ in range(4)]
    rows, prev = [], GENESIS_HASH
    for row_id, record in enumerate(records, start=1):
        rows.append((row_id, prev, chain_hash(prev, record), record))
        prev = rows[-1][2]
    assert verify_rows(rows).ok

    row_id, prev_hash, row_hash, record = rows[2]
    rows[2] = (row_id, prev_hash, row_hash, replace(record, outcome="success", latency_ms=1))

    assert verify_rows(rows).first_broken_id == 3


def test_the_database_refuses_update(fresh_engine):
    _append(fresh_engine, [audit_record()])

    with Session(fresh_engine) as session, pytest.raises(IntegrityError, match="append-only"):
        session.execute(text("UPDATE audit_events SET outcome = 'success'"))
        session.flush()


def test_postgresql_refuses_delete_and_truncate_outside_the_purge(fresh_engine):
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no session settings: DELETE is not blocked there (documented)")
    _append(fresh_engine, [audit_record()])

    for statement in ("DELETE FROM audit_events", "TRUNCATE audit_events"):
        with Session(fresh_engine) as session, pytest.raises(IntegrityError, match="append-only"):
            session.execute(text(statement))

    assert len(_ids(fresh_engine)) == 1


def test_purge_removes_the_oldest_stretch_and_the_rest_still_verifies(fresh_engine):
    old = [audit_record(occurred_at=T0 - timedelta(days=400 - n)) for n in range(3)]
    # Written out of time order (a slow request finishes after a quick later one): the old event
    # sits between recent ones and must stay, or the chain would break.
    recent = [audit_record(occurred_at=T0 + timedelta(minutes=n)) for n in range(3)]
    straggler = audit_record(occurred_at=T0 - timedelta(days=399))
    _append(fresh_engine, old + [recent[0], straggler, recent[1], recent[2]])
    with Session(fresh_engine) as session:
        last_purged_hash = session.scalar(select(AuditEvent.row_hash).where(
            AuditEvent.event_id == uuid.UUID(old[-1].event_id)))

    with Session(fresh_engine) as session:
        assert purge_before(session, T0 - timedelta(days=30)) == 3

    with Session(fresh_engine) as session:
        remaining = set(map(str, session.scalars(select(AuditEvent.event_id))))
    assert remaining == {record.event_id for record in recent + [straggler]}
    report = _verify(fresh_engine)
    assert (report.ok, report.rows_checked, report.anchor) == (True, 4, last_purged_hash)


def test_concurrent_writers_keep_one_unbroken_chain(fresh_engine):
    """The drainer and the API's fallback write at the same time: the chain lock orders them."""
    errors = []

    def writer():
        try:
            for _ in range(10):
                _append(fresh_engine, [audit_record(), audit_record()])
        except Exception as error:  # reported below; a thread cannot fail the test itself
            errors.append(error)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with Session(fresh_engine) as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 80
    assert _verify(fresh_engine).ok
