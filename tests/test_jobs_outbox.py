"""Accepted means dispatched: the transactional outbox of job submission.

The broker is made unreachable for one API the real way: an app of the hub whose settings name
a broker on a port nothing listens on (the session's Redis and worker keep running for the
rest). The database is made unavailable by holding SQLite's write lock from another
connection, so the submission's own commit fails."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from app.canonical.times import to_utc
from app.database import utcnow
from app.jobs.models import Job, OutboxMessage
from tests.fixtures.jobs import OPERATOR, finished, idempotency_key, job_in_status, submit
from tests.fixtures.phi import leaks_in
from tests.fixtures.problems import assert_retry_later
from tests.fixtures.processes import free_port, wait_until
from tests.fixtures.services import hub_app_with

pytestmark = pytest.mark.usefixtures("clean_lookup_state", "celery_worker")

UNITS = ["ICU-1"]


@pytest.fixture
def broker_down_app(hub_settings, hub_app):
    """The hub's app with its Celery broker on a closed port: every send fails as it does
    when the broker is down, while the database and Redis are the session's."""
    app = hub_app_with(hub_settings, celery_broker_url=f"redis://127.0.0.1:{free_port()}/0")
    yield app
    app.extensions["hub"].database.engine.dispose()


@pytest.fixture(autouse=True)
def _nothing_left_unsent(hub_app):
    """After each test, the broker (back) gets whatever it left unsent: no job of this module
    stays queued, and the next test's dispatcher sees only its own messages."""
    yield
    session = hub_app.extensions["hub"].database.new_session()
    session.execute(update(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
                    .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    session.close()
    _run_dispatcher(hub_app)


def _counts_body(truth) -> dict:
    return {"type": "administration_counts",
            "params": {"window": {"since": truth["administration"]["window_start"],
                                  "until": truth["administration"]["window_end"]},
                       "units": UNITS}}


def _expected_records(truth) -> int:
    return sum(row["count"] for row in truth["administration"]["by_site_ward_ndc11_date"]
               if row["ward"] == "ICU1")


def _outbox(hub_app, job_id: str) -> list[OutboxMessage]:
    session = hub_app.extensions["hub"].database.new_session()
    try:
        return list(session.scalars(select(OutboxMessage).where(
            OutboxMessage.job_id == uuid.UUID(job_id))))
    finally:
        session.close()


def _job(hub_app, job_id: str) -> Job:
    session = hub_app.extensions["hub"].database.new_session()
    try:
        return session.get(Job, uuid.UUID(job_id))
    finally:
        session.close()


def _make_due(hub_app, job_id: str) -> None:
    """Bring the job's outbox messages' next attempt forward (the backoff is seconds)."""
    session = hub_app.extensions["hub"].database.new_session()
    try:
        session.execute(update(OutboxMessage).where(OutboxMessage.job_id == uuid.UUID(job_id))
                        .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    finally:
        session.close()


def _run_dispatcher(hub_app) -> str:
    result = hub_app.test_cli_runner().invoke(args=["hub", "jobs", "dispatch-pending"])
    assert result.exit_code == 0, result.output
    return result.output


def _accepted_while_broker_down(broker_down_app, tokens, truth, key=None) -> str:
    response = submit(broker_down_app.test_client(), tokens, _counts_body(truth), key=key)
    assert response.status_code == 202, response.get_data(as_text=True)[:500]
    assert response.json["status"] == "queued"
    return response.json["id"]


def test_a_job_submitted_while_the_broker_is_down_is_accepted_and_kept_unsent(
        broker_down_app, hub_app, tokens, truth):
    job_id = _accepted_while_broker_down(broker_down_app, tokens, truth)

    (message,) = _outbox(hub_app, job_id)
    assert message.task_name == "hub.compute.plan_job" and message.unit is None
    assert message.sent_at is None and message.attempts == 1
    assert message.last_error == "OperationalError"  # kombu's: the class name, nothing more
    assert message.next_attempt_at > message.created_at
    assert _job(hub_app, job_id).status == "queued"


def test_the_dispatcher_sends_it_once_the_broker_is_back_and_the_job_succeeds(
        broker_down_app, hub_app, api, tokens, truth):
    job_id = _accepted_while_broker_down(broker_down_app, tokens, truth)
    # Not due yet (backoff): the dispatcher leaves it alone.
    _run_dispatcher(hub_app)
    assert _outbox(hub_app, job_id)[0].sent_at is None

    _make_due(hub_app, job_id)
    output = _run_dispatcher(hub_app)

    (message,) = _outbox(hub_app, job_id)
    assert message.sent_at is not None and message.attempts == 2, output
    assert message.last_error is None
    job = finished(api, tokens, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["records"] == _expected_records(truth)


def test_beats_dispatcher_task_on_a_worker_sends_it_too(broker_down_app, hub_app, api, tokens,
                                                         truth):
    import celeryconfig
    from app.jobs.dispatch import celery_client

    (entry,) = [entry for entry in celeryconfig.beat_schedule.values()
                if entry["task"] == "hub.maintenance.dispatch_job_outbox"]
    assert entry["schedule"] <= 10 and entry["options"]["expires"] <= entry["schedule"]
    job_id = _accepted_while_broker_down(broker_down_app, tokens, truth)
    _make_due(hub_app, job_id)

    # What beat sends every few seconds, run by the session's worker (maintenance queue).
    celery_client().send_task("hub.maintenance.dispatch_job_outbox")

    job = finished(api, tokens, job_id, timeout=60)
    assert job["status"] == "succeeded", job
    assert job["result"]["records"] == _expected_records(truth)
    assert _outbox(hub_app, job_id)[0].sent_at is not None


def test_the_dispatcher_keeps_an_unsent_job_while_the_broker_stays_down(
        broker_down_app, hub_app, tokens, truth):
    job_id = _accepted_while_broker_down(broker_down_app, tokens, truth)
    _make_due(hub_app, job_id)

    output = _run_dispatcher(broker_down_app)

    (message,) = _outbox(hub_app, job_id)
    assert '"failed": 1' in output
    assert message.sent_at is None and message.attempts == 2
    assert to_utc(message.next_attempt_at) > utcnow()  # backed off, not retried in a tight loop


def test_reposting_an_undispatched_job_with_its_key_revives_it(
        broker_down_app, hub_app, api, tokens, truth):
    key = idempotency_key("revive")
    job_id = _accepted_while_broker_down(broker_down_app, tokens, truth, key=key)

    # Still down: the re-post answers the same job and tries the send again at once.
    again = submit(broker_down_app.test_client(), tokens, _counts_body(truth), key=key)
    assert again.status_code == 200 and again.json["id"] == job_id
    assert _outbox(hub_app, job_id)[0].attempts == 2

    # Back: the re-post sends it, without waiting for the dispatcher.
    revived = submit(api, tokens, _counts_body(truth), key=key)
    assert revived.status_code == 200 and revived.json["id"] == job_id
    (message,) = _outbox(hub_app, job_id)
    assert message.sent_at is not None and message.attempts == 3
    assert finished(api, tokens, job_id)["status"] == "succeeded"


def test_a_plan_sent_twice_runs_the_job_once(hub_app, api, tokens, truth):
    job_id = submit(api, tokens, _counts_body(truth)).json["id"]
    first = finished(api, tokens, job_id)
    assert first["status"] == "succeeded"
    assert _outbox(hub_app, job_id)[0].sent_at is not None
    # As if the API had died between the broker taking the plan and recording it sent.
    session = hub_app.extensions["hub"].database.new_session()
    session.execute(update(OutboxMessage).where(OutboxMessage.job_id == uuid.UUID(job_id))
                    .values(sent_at=None))
    session.commit()
    session.close()
    _make_due(hub_app, job_id)

    _run_dispatcher(hub_app)

    wait_until(lambda: _outbox(hub_app, job_id)[0].sent_at is not None, timeout=10,
               description="the plan sent again")
    # The second plan finds the job already under way (finished) and fans nothing out.
    second = finished(api, tokens, job_id)
    assert second["status"] == "succeeded"
    assert second["result"] == first["result"]
    assert second["progress"] == first["progress"]
    assert second["finished_at"] == first["finished_at"]


def test_a_replay_while_the_broker_is_down_is_kept_and_sent_by_the_dispatcher(
        broker_down_app, hub_app, api, tokens, truth):
    from app.jobs import service

    job_id = submit(api, tokens, _counts_body(truth)).json["id"]
    assert finished(api, tokens, job_id)["status"] == "succeeded"
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        # As a job whose unit ran out of retries is left: the unit dead-lettered, the job failed.
        session = hub.database.session
        service.dead_letter_unit(db_session=session, job_id=job_id, unit=UNITS[0],
                                 task_name="hub.io.run_job_unit", attempts=4,
                                 error="DownstreamUnavailable: eMAR down")
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(
            status="failed", error="1 of 1 units failed after retries"))
        session.commit()
        (letter_id,) = [str(letter.id) for letter in service.list_dead_letters(
            db_session=session, tenant_id=None) if str(letter.job_id) == job_id]

    replayed = broker_down_app.test_client().post(f"/v1/dead-letters/{letter_id}/replay",
                                                  headers=tokens.headers(OPERATOR))

    assert replayed.status_code == 202, replayed.get_data(as_text=True)[:500]
    replay = [message for message in _outbox(hub_app, job_id) if message.unit == UNITS[0]]
    assert [(m.task_name, m.sent_at, m.attempts) for m in replay] == [
        ("hub.io.run_job_unit", None, 1)]
    _make_due(hub_app, job_id)
    _run_dispatcher(hub_app)
    job = job_in_status(api, tokens, job_id, {"succeeded"})
    assert job["result"]["records"] == _expected_records(truth)


def _sqlite_path(hub_settings) -> str:
    url = make_url(hub_settings.database_url)
    if url.get_backend_name() != "sqlite":
        pytest.skip("holds SQLite's write lock; on PostgreSQL the outage tests of Step 7 apply")
    return url.database


def test_a_database_failure_at_submit_answers_503_and_stores_nothing(
        hub_settings, hub_app, api, tokens, truth):
    key = idempotency_key("db-down")
    session = hub_app.extensions["hub"].database.new_session()
    jobs_before = session.scalar(select(func.count()).select_from(Job))
    outbox_before = session.scalar(select(func.count()).select_from(OutboxMessage))
    session.close()
    holder = sqlite3.connect(_sqlite_path(hub_settings), timeout=1, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock; readers still read (WAL)
        # The submission reads, validates, then its commit waits out SQLite's busy timeout
        # (10 s, app.database) and fails, as a commit does when the database is gone.
        response = submit(api, tokens, _counts_body(truth), key=key)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert_retry_later(response, 503, "database-unavailable")
    session = hub_app.extensions["hub"].database.new_session()
    try:
        assert session.scalar(select(Job).where(Job.idempotency_key == key)) is None
        assert session.scalar(select(func.count()).select_from(Job)) == jobs_before
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == outbox_before
    finally:
        session.close()


def test_outbox_messages_hold_ids_only_never_phi(broker_down_app, hub_app, tokens, truth,
                                                 seeded_identifiers):
    _accepted_while_broker_down(broker_down_app, tokens, truth)
    assert set(OutboxMessage.__table__.columns.keys()) == {
        "id", "task_name", "job_id", "unit", "created_at", "sent_at", "attempts",
        "next_attempt_at", "last_error"}

    session = hub_app.extensions["hub"].database.new_session()
    try:
        rows = session.execute(select(OutboxMessage.__table__)).all()
    finally:
        session.close()

    assert rows
    assert leaks_in("\n".join(repr(tuple(row)) for row in rows), seeded_identifiers) == []
    assert {row.task_name for row in rows} <= {"hub.compute.plan_job", "hub.io.run_job_unit"}
    assert all(row.last_error in (None, "OperationalError") for row in rows)
