"""No job left in limbo: a job task's retries while the database is unavailable (the outage
budget), what happens once the budget is spent, and the orphan reconciler's rules (a unit held
by a live worker is never re-dispatched; one held by nobody is, after two looks).

Workers are real (the session's); inspection asks them over the real broker. The unit task is
also called in this process, under an app whose database URL names a server that is not there,
which is exactly what the task sees when the database is down."""

from __future__ import annotations

import importlib
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.database import utcnow
from app.jobs import dispatch, service
from app.jobs.models import DeadLetter, Job, JobUnit, OutboxMessage
from app.tenants.service import get_tenant_by_slug
from tests.fixtures.jobs import OPERATOR, finished, full_window, idempotency_key, job_in_status
from tests.fixtures.processes import free_port, wait_until
from tests.fixtures.services import hub_app_with

pytestmark = pytest.mark.usefixtures("clean_lookup_state", "celery_worker")


def _session(hub_app):
    return hub_app.extensions["hub"].database.new_session()


def _unit_column(hub_app, job_id: str, column):
    """``column`` of the job's one unit, read in a session of its own."""
    session = _session(hub_app)
    try:
        return session.scalar(select(column).where(JobUnit.job_id == uuid.UUID(job_id)))
    finally:
        session.close()


def _recorded_job(hub_app, truth, units: list[str], *, running: bool = True) -> str:
    """A north-general counts job recorded (not sent): queued, or running with its units
    pending, as if its plan had run. Its plan's outbox message is marked sent."""
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        tenant = get_tenant_by_slug(db_session=session, slug="north-general")
        submission = service.submit_job(
            db_session=session, redis_client=hub.redis, settings=hub.settings,
            tenant_id=str(tenant.id), client_pk=None, job_type="administration_counts",
            raw_params={"window": full_window(truth), "units": units},
            idempotency_key=idempotency_key("orphan"), request_id=None)
        job_id = submission.job.id
        session.execute(update(OutboxMessage).where(OutboxMessage.job_id == job_id)
                        .values(sent_at=utcnow()))
        session.commit()
        if running:
            service.start_job(db_session=session, job_id=str(job_id))
        return str(job_id)


def _set_units(hub_app, job_id: str, *, status: str | None, quiet_seconds: float) -> None:
    """Give the job's units ``status`` (None: keep it; then only running units change) and a
    last change ``quiet_seconds`` ago."""
    values = {"updated_at": utcnow() - timedelta(seconds=quiet_seconds)}
    query = update(JobUnit).where(JobUnit.job_id == uuid.UUID(job_id))
    if status is None:
        query = query.where(JobUnit.status == "running")
    else:
        values["status"] = status
    session = _session(hub_app)
    try:
        session.execute(query.values(**values))
        session.commit()
    finally:
        session.close()


def _suspects(hub_app, *, holdings, idle=frozenset({"io", "compute"})) -> set[tuple]:
    session = _session(hub_app)
    try:
        return {(suspect.job_id, suspect.unit) for suspect in service.orphan_suspects(
            db_session=session, settings=hub_app.extensions["hub"].settings,
            holdings=holdings, idle_queues=idle)}
    finally:
        session.close()


def _nothing_held(workers=("w@host",)) -> dispatch.WorkerHoldings:
    return dispatch.WorkerHoldings(workers=frozenset(workers), tasks=frozenset())


@pytest.fixture
def fresh_looks(hub_app):
    """No earlier look of the orphan reconciler (its memory is one Redis key), no check
    under way."""
    keys = (service.ORPHAN_SUSPECTS_KEY, service.ORPHAN_CHECK_LOCK_KEY)
    hub_app.extensions["hub"].redis.delete(*keys)
    yield
    hub_app.extensions["hub"].redis.delete(*keys)


def _redispatch(hub_app, now: float) -> dict:
    hub = hub_app.extensions["hub"]
    session = hub.database.new_session()
    try:
        return service.redispatch_orphans(db_session=session, redis_client=hub.redis,
                                          settings=hub.settings, now=now)
    finally:
        session.close()


def _unit_messages(hub_app, job_id: str) -> list[OutboxMessage]:
    session = _session(hub_app)
    try:
        return list(session.scalars(select(OutboxMessage).where(
            OutboxMessage.job_id == uuid.UUID(job_id),
            OutboxMessage.task_name == dispatch.RUN_JOB_UNIT)))
    finally:
        session.close()


# --- the outage budget ---------------------------------------------------------------------

def test_outage_retries_back_off_exponentially_and_stop_at_the_budget(hub_settings):
    now = time.time()
    delays = [service.outage_retry_delay(settings=hub_settings, outage_retries=retry,
                                         first_outage_at=now, now=now) for retry in range(10)]

    assert all(0.5 * 2 ** retry <= delay <= 2 ** retry for retry, delay in enumerate(delays[:4]))
    assert max(delays) <= hub_settings.hub_outage_retry_max_seconds
    assert hub_settings.hub_unit_outage_retry_seconds >= 300  # an outage of minutes
    spent = service.outage_retry_delay(
        settings=hub_settings, outage_retries=3,
        first_outage_at=now - hub_settings.hub_unit_outage_retry_seconds, now=now)
    assert spent is None


@pytest.fixture
def database_down_app(hub_settings, monkeypatch):
    """The worker's Flask app, as a unit task in this process sees it while the database is
    down: its URL names a server (or file) that is not there."""
    # The module (the package ``tasks`` exports its Celery app under the same name).
    celery_module = importlib.import_module("tasks.celery_app")
    if hub_settings.database_url.startswith("postgresql"):
        url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"
    else:
        url = f"sqlite:////nonexistent-{uuid.uuid4().hex}/hub.db"
    app = hub_app_with(hub_settings, database_url=url)
    monkeypatch.setattr(celery_module, "_flask_app", app)
    yield app
    app.extensions["hub"].database.engine.dispose()


def _call_task(task, *args: str, outage_retries: int, outage_since: float,
               queue: str = "io"):
    """Run a job task in this process as a worker would run its retried delivery."""
    from tasks.jobs import OUTAGE_RETRIES_HEADER, OUTAGE_SINCE_HEADER

    headers = {OUTAGE_RETRIES_HEADER: outage_retries, OUTAGE_SINCE_HEADER: outage_since}
    task.push_request(id=str(uuid.uuid4()), args=list(args), kwargs={},
                      retries=outage_retries, headers=headers,
                      delivery_info={"exchange": "hub", "routing_key": queue},
                      called_directly=False, is_eager=False, **headers)
    try:
        return task(*args)
    finally:
        task.pop_request()


def _call_unit_task(job_id: str, unit: str, *, outage_retries: int, outage_since: float):
    from tasks.jobs import run_job_unit

    return _call_task(run_job_unit, job_id, unit, outage_retries=outage_retries,
                      outage_since=outage_since)


def test_a_unit_meeting_a_database_outage_retries_and_its_retry_finishes_it(
        database_down_app, hub_app, truth, api, tokens):
    from celery.exceptions import Retry

    job_id = _recorded_job(hub_app, truth, ["ICU-1"])

    with pytest.raises(Retry) as retry:
        _call_unit_task(job_id, "ICU-1", outage_retries=2, outage_since=time.time() - 5)

    assert 0 < retry.value.when <= hub_app.extensions["hub"].settings.hub_outage_retry_max_seconds
    # The retry went to the real broker; the session's worker (database fine) runs it.
    def unit_done():
        return _unit_column(hub_app, job_id, JobUnit.status) == "done"

    wait_until(unit_done, timeout=30, interval=0.2, description="the retried unit done")
    # A retry is not a new delivery (the outage does not use up the deliveries); the
    # first delivery's count never reached the database that was down.
    assert _unit_column(hub_app, job_id, JobUnit.attempts) == 0


def test_a_unit_whose_outage_outlasts_the_budget_and_the_dead_letter_is_left_for_the_reconciler(
        database_down_app, hub_app, truth, hub_settings):
    job_id = _recorded_job(hub_app, truth, ["ICU-2"])
    _set_units(hub_app, job_id, status="running", quiet_seconds=0)

    outcome = _call_unit_task(job_id, "ICU-2", outage_retries=20,
                              outage_since=time.time() - hub_settings.hub_unit_outage_retry_seconds)

    # Neither run nor dead-lettered (the database is still down): not raised into a broken
    # chord either, but left as it was for the orphan reconciler to send again.
    assert outcome == {"job_id": job_id, "unit": "ICU-2", "status": "orphaned"}
    assert _unit_column(hub_app, job_id, JobUnit.status) == "running"
    _set_units(hub_app, job_id, status="running", quiet_seconds=600)
    assert (job_id, "ICU-2") in _suspects(hub_app, holdings=_nothing_held())
    _cancel(hub_app, job_id)


def test_a_unit_past_its_outage_budget_is_dead_lettered_once_the_database_answers(
        hub_app, truth, api, tokens):
    from sqlalchemy.exc import OperationalError

    from tasks.jobs import _give_up_unit, run_job_unit

    job_id = _recorded_job(hub_app, truth, ["ICU-1"])
    _set_units(hub_app, job_id, status="running", quiet_seconds=0)
    outage = OperationalError("SELECT 1", {}, Exception("connection refused"))
    with hub_app.app_context():
        hub = hub_app.extensions["hub"]
        run_job_unit.push_request(retries=25)
        try:
            outcome = _give_up_unit(run_job_unit, hub, job_id, "ICU-1", outage)
        finally:
            run_job_unit.pop_request()
        assert service.merge_job(db_session=hub.database.session, settings=hub.settings,
                                 job_id=job_id) == "failed"

    assert outcome["status"] == "failed"
    session = _session(hub_app)
    try:
        (letter,) = session.scalars(select(DeadLetter).where(
            DeadLetter.job_id == uuid.UUID(job_id))).all()
    finally:
        session.close()
    assert letter.error == "OperationalError: database-unavailable"  # no SQL, no values
    assert letter.attempts == 26 and letter.status == "open"
    # Replayable: the replay runs the unit and merges the job.
    replayed = api.post(f"/v1/dead-letters/{letter.id}/replay", headers=tokens.headers(OPERATOR))
    assert replayed.status_code == 202
    job = job_in_status(api, tokens, job_id, {"succeeded"}, timeout=60)
    assert job["result"]["records"] == sum(
        row["count"] for row in truth["administration"]["by_site_ward_ndc11_date"]
        if row["ward"] == "ICU1")


def test_the_chords_errback_survives_a_database_outage(database_down_app, hub_app, truth,
                                                       api, tokens):
    from celery.exceptions import Retry

    from tasks.jobs import mark_job_failed

    job_id = _recorded_job(hub_app, truth, ["ICU-1"])

    with pytest.raises(Retry):
        _call_task(mark_job_failed, job_id, outage_retries=0, outage_since=time.time(),
                   queue="compute")

    # Its retry (session's worker, database fine) records the failure.
    job = finished(api, tokens, job_id, timeout=30)
    assert job["status"] == "failed" and "unexpectedly" in job["error"]


def test_merge_and_errback_past_the_outage_budget_leave_the_job_to_the_reconcilers(
        database_down_app, hub_app, truth, hub_settings):
    from tasks.jobs import mark_job_failed, merge_job_results

    job_id = _recorded_job(hub_app, truth, ["ICU-1"])
    spent = time.time() - hub_settings.hub_unit_outage_retry_seconds

    merged = _call_task(merge_job_results, job_id, outage_retries=25, outage_since=spent,
                        queue="compute")
    marked = _call_task(mark_job_failed, job_id, outage_retries=25, outage_since=spent,
                        queue="compute")

    assert merged == {"job_id": job_id, "status": "deferred"}
    assert marked == {"job_id": job_id, "status": "deferred"}
    _cancel(hub_app, job_id)


def test_the_merge_reconciler_fails_a_running_job_whose_unit_was_dead_lettered(hub_app, truth):
    job_id = _recorded_job(hub_app, truth, ["ICU-1"])
    _set_units(hub_app, job_id, status="failed", quiet_seconds=600)
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        awaiting = {job for job, _tenant in service.jobs_awaiting_merge(
            db_session=session, idle_seconds=60)}
        assert job_id in awaiting
        assert service.merge_job(db_session=session, settings=hub.settings,
                                 job_id=job_id) == "failed"


def _cancel(hub_app, job_id: str) -> None:
    """Finish a test's recorded job (cancelled), so no later orphan check sends it."""
    session = _session(hub_app)
    try:
        job = session.get(Job, uuid.UUID(job_id))
        service.cancel_job(db_session=session, job=job)
    finally:
        session.close()


# --- the orphan rules ------------------------------------------------------------------------

def test_orphan_rules_held_recent_queued_and_unsent_units_are_not_orphans(hub_app, truth):
    running = _recorded_job(hub_app, truth, ["ICU-1"])
    _set_units(hub_app, running, status="running", quiet_seconds=600)
    pending = _recorded_job(hub_app, truth, ["ICU-2"])
    _set_units(hub_app, pending, status="pending", quiet_seconds=600)
    recent = _recorded_job(hub_app, truth, ["ICU-1"])
    _set_units(hub_app, recent, status="running", quiet_seconds=1)
    held = dispatch.WorkerHoldings(workers=frozenset({"w@host"}), tasks=frozenset({
        (dispatch.RUN_JOB_UNIT, (running, "ICU-1"))}))
    try:
        everything_idle = _suspects(hub_app, holdings=_nothing_held())
        assert (running, "ICU-1") in everything_idle
        assert (pending, "ICU-2") in everything_idle
        assert (recent, "ICU-1") not in everything_idle  # within the grace period

        # Held by a live worker (running, reserved or waiting out a countdown): never.
        assert (running, "ICU-1") not in _suspects(hub_app, holdings=held)
        # Pending while work waits in the io queue: merely queued behind it.
        busy_io = _suspects(hub_app, holdings=_nothing_held(), idle=frozenset({"compute"}))
        assert (pending, "ICU-2") not in busy_io and (running, "ICU-1") in busy_io

        # A unit whose task still waits in the outbox is the dispatcher's.
        session = _session(hub_app)
        session.add(OutboxMessage(task_name=dispatch.RUN_JOB_UNIT, job_id=uuid.UUID(pending),
                                  unit="ICU-2", next_attempt_at=utcnow() + timedelta(hours=1)))
        session.commit()
        session.close()
        assert (pending, "ICU-2") not in _suspects(hub_app, holdings=_nothing_held())
    finally:
        for job_id in (running, pending, recent):
            _cancel(hub_app, job_id)


def test_a_queued_job_whose_plan_no_worker_holds_is_an_orphan_too(hub_app, truth):
    job_id = _recorded_job(hub_app, truth, ["ICU-1"], running=False)
    session = _session(hub_app)
    session.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(
        created_at=utcnow() - timedelta(minutes=10)))
    session.commit()
    session.close()
    plan_held = dispatch.WorkerHoldings(workers=frozenset({"w@host"}), tasks=frozenset({
        (dispatch.PLAN_JOB, (job_id,))}))
    try:
        assert (job_id, None) in _suspects(hub_app, holdings=_nothing_held())
        assert (job_id, None) not in _suspects(hub_app, holdings=plan_held)
        assert (job_id, None) not in _suspects(hub_app, holdings=_nothing_held(),
                                               idle=frozenset({"io"}))
    finally:
        _cancel(hub_app, job_id)


def test_an_orphaned_unit_is_redispatched_after_two_looks_and_the_job_succeeds(
        hub_app, truth, api, tokens, fresh_looks):
    from app.observability.metrics import JOB_TASKS_REDISPATCHED

    before = JOB_TASKS_REDISPATCHED.labels(task="unit")._value.get()
    # As a SIGKILLed worker leaves it: begun (running), quiet, held by no live worker.
    job_id = _recorded_job(hub_app, truth, ["ICU-1"])
    _set_units(hub_app, job_id, status="running", quiet_seconds=600)
    now = time.time()

    first = _redispatch(hub_app, now)
    assert first["workers"] >= 1 and first["suspects"] >= 1
    assert _unit_messages(hub_app, job_id) == []  # one look is not enough
    second = _redispatch(hub_app, now + 15)

    assert second["redispatched"] >= 1
    (message,) = _unit_messages(hub_app, job_id)
    assert message.unit == "ICU-1" and message.sent_at is not None
    assert JOB_TASKS_REDISPATCHED.labels(task="unit")._value.get() >= before + 1
    job = finished(api, tokens, job_id, timeout=60)
    assert job["status"] == "succeeded", job
    assert job["result"]["records"] == sum(
        row["count"] for row in truth["administration"]["by_site_ward_ndc11_date"]
        if row["ward"] == "ICU1")


def test_a_unit_running_on_a_live_worker_is_never_redispatched(
        hub_app, truth, api, tokens, demo_administration, celery_worker, fresh_looks):
    from tests.fixtures.jobs import submit

    demo_administration.admin.set_faults(latency_ms=1500)
    job_id = submit(api, tokens, {"type": "administration_counts",
                                  "params": {"window": full_window(truth),
                                             "units": ["ICU-1"]}}).json["id"]
    client = dispatch.celery_client()

    def unit_running_on_the_worker():
        active = client.control.inspect(destination=[celery_worker.hostname],
                                        timeout=1.0).active() or {}
        return any(task["name"] == dispatch.RUN_JOB_UNIT and job_id in str(task["args"])
                   for task in active.get(celery_worker.hostname, []))

    wait_until(unit_running_on_the_worker, timeout=30, interval=0.2,
               description="the unit running on the session's worker")

    def begun():
        return _unit_column(hub_app, job_id, JobUnit.attempts) == 1

    wait_until(begun, timeout=30, interval=0.1, description="the unit begun")
    # Quiet for long by its row (a slow unit), but held: no look may re-dispatch it.
    _set_units(hub_app, job_id, status=None, quiet_seconds=600)
    now = time.time()
    _redispatch(hub_app, now)
    _redispatch(hub_app, now + 15)
    demo_administration.admin.clear_faults()

    assert _unit_messages(hub_app, job_id) == []
    assert finished(api, tokens, job_id, timeout=60)["status"] == "succeeded"


def test_the_orphan_check_runs_every_15_seconds_on_the_maintenance_queue():
    import celeryconfig

    (entry,) = [entry for entry in celeryconfig.beat_schedule.values()
                if entry["task"] == "hub.maintenance.redispatch_orphaned_units"]
    assert entry["schedule"] <= 15 and entry["options"]["expires"] <= entry["schedule"]
    assert celeryconfig.task_routes["hub.maintenance.*"]["queue"] == "maintenance"
