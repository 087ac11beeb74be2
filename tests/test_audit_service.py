"""Writing queued audit events into the chain: batches, one drainer at a time, no duplicates
after a crash, and the beat task on a real worker."""

import uuid

import pytest
from sqlalchemy import select

from app.audit.chain import append_records, verify_chain
from app.audit.models import AuditEvent
from app.audit.records import AuditRecord
from app.audit.service import (
    DRAIN_LOCK_KEY,
    LAST_WRITE_KEY,
    PENDING_KEY,
    UNREADABLE_KEY,
    pending_count,
    write_pending_events,
)
from tests.fixtures.processes import wait_until


@pytest.fixture
def hub(hub_app):
    """The hub's resources inside an app context, with an empty audit queue."""
    resources = hub_app.extensions["hub"]
    resources.redis.delete(PENDING_KEY, UNREADABLE_KEY, DRAIN_LOCK_KEY)
    with hub_app.app_context():
        yield resources
        resources.database.session.rollback()
    resources.redis.delete(PENDING_KEY, UNREADABLE_KEY)


def _make_requests(api, count: int) -> list[str]:
    """Send ``count`` audited requests (unauthenticated, so 401) and return their request ids."""
    request_ids = [f"drain-test-{uuid.uuid4().hex}" for _ in range(count)]
    for request_id in request_ids:
        api.get("/v1/inventory", headers={"X-Request-ID": request_id})
    return request_ids


def _rows_of(hub, request_ids) -> list[AuditEvent]:
    session = hub.database.session
    session.rollback()  # read what other connections committed
    return list(session.scalars(select(AuditEvent).where(AuditEvent.request_id.in_(request_ids))
                                .order_by(AuditEvent.id)))


def test_draining_writes_queued_events_in_order_into_a_valid_chain(api, hub):
    request_ids = _make_requests(api, 5)
    assert pending_count(redis_client=hub.redis) == 5

    written = write_pending_events(redis_client=hub.redis, db_session=hub.database.session)

    assert written == 5
    assert pending_count(redis_client=hub.redis) == 0
    assert [row.request_id for row in _rows_of(hub, request_ids)] == request_ids
    assert hub.redis.get(LAST_WRITE_KEY)
    assert verify_chain(hub.database.session).ok


def test_small_batches_drain_the_whole_queue(api, hub):
    request_ids = _make_requests(api, 7)

    written = write_pending_events(redis_client=hub.redis, db_session=hub.database.session,
                                   batch_size=3)

    assert written == 7
    assert len(_rows_of(hub, request_ids)) == 7


def test_a_drainer_that_crashed_after_commit_leaves_no_duplicates(api, hub):
    request_ids = _make_requests(api, 4)
    # The crashed drainer: its batch is committed, but it died before trimming the queue.
    queued = [AuditRecord.from_json(entry) for entry in hub.redis.lrange(PENDING_KEY, 0, -1)]
    append_records(db_session=hub.database.session, records=queued[:3])
    hub.database.session.commit()

    written = write_pending_events(redis_client=hub.redis, db_session=hub.database.session)

    assert written == 1
    assert pending_count(redis_client=hub.redis) == 0
    rows = _rows_of(hub, request_ids)
    assert sorted(row.request_id for row in rows) == sorted(request_ids)
    assert len({row.event_id for row in rows}) == 4
    assert verify_chain(hub.database.session).ok


def test_only_one_drainer_runs_at_a_time(api, hub):
    request_ids = _make_requests(api, 2)
    running = hub.redis.lock(DRAIN_LOCK_KEY, timeout=30)
    assert running.acquire(blocking=False)
    try:
        assert write_pending_events(redis_client=hub.redis,
                                    db_session=hub.database.session) == 0
        assert pending_count(redis_client=hub.redis) == 2
    finally:
        running.release()

    assert write_pending_events(redis_client=hub.redis, db_session=hub.database.session) == 2
    assert len(_rows_of(hub, request_ids)) == 2


def test_unreadable_queue_entries_are_set_aside_not_lost_or_retried(api, hub):
    hub.redis.rpush(PENDING_KEY, "not an audit event")
    request_ids = _make_requests(api, 1)

    assert write_pending_events(redis_client=hub.redis, db_session=hub.database.session) == 1

    assert hub.redis.lrange(UNREADABLE_KEY, 0, -1) == ["not an audit event"]
    assert pending_count(redis_client=hub.redis) == 0
    assert len(_rows_of(hub, request_ids)) == 1


def test_the_beat_task_writes_queued_events_on_a_worker(api, hub, celery_worker):
    from app.jobs.dispatch import celery_client

    request_ids = _make_requests(api, 3)

    celery_client().send_task("hub.maintenance.write_audit_events")

    wait_until(lambda: len(_rows_of(hub, request_ids)) == 3, timeout=30, interval=0.2,
               description="audit events written by the worker")
    assert pending_count(redis_client=hub.redis) == 0


def test_beat_drains_every_five_seconds_and_drops_missed_ticks():
    import celeryconfig

    entry = celeryconfig.beat_schedule["write-audit-events"]

    assert entry["task"] == "hub.maintenance.write_audit_events"
    assert entry["schedule"] == 5.0 and entry["options"] == {"expires": 5}

