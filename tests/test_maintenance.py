"""The retention purge removes exactly what has expired, and reports what it removed; the
hub-wide retention_purge sync runs it on a worker and keeps the report on its run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.chain import append_records, verify_chain
from app.audit.models import AuditEvent
from app.events.models import Delivery, Event
from app.jobs.models import Job, JobResult, JobUnit, OutboxMessage
from app.maintenance.service import purge_expired
from app.syncs import service
from app.syncs.models import SyncRun, SyncSchedule
from tests.fixtures.factories import (
    audit_record,
    client_row,
    job_row,
    job_unit_row,
    subscription_row,
    sync_run_row,
    tenant_row,
)
from tests.fixtures.processes import wait_until

NOW = datetime(2026, 11, 24, 3, 15, tzinfo=UTC)
RETENTION_DAYS = 2192
SYNC_RUN_RETENTION_DAYS = 30


@pytest.fixture
def session(fresh_engine):
    with Session(fresh_engine, expire_on_commit=False) as db_session:
        yield db_session


def _job(session, tenant, *, status="succeeded", key=None, expires_in=timedelta(hours=1),
         result_expires_in=None, partial=True) -> Job:
    job = job_row(session, tenant_id=tenant.id, params={}, status=status, idempotency_key=key,
                  request_hash="h", expires_at=NOW + expires_in)
    job_unit_row(session, job, partial={"unit": "ICU-1", "records": 1, "groups": []}
                 if partial else None)
    if result_expires_in is not None:
        session.add(JobResult(job_id=job.id, result={"records": 1},
                              expires_at=NOW + result_expires_in))
    session.commit()
    return job


def _sync_runs(session, tenant, **started_days_ago_by_outcome: list[float]) -> dict:
    """Runs of one tenant sync, ``outcome=[days ago it started, …]``; returns their ids by
    ``(outcome, days ago)``."""
    schedule = SyncSchedule(kind="cache_warming", scope=str(tenant.id), tenant_id=tenant.id)
    session.add(schedule)
    session.flush()
    runs = {}
    for outcome, days_ago in started_days_ago_by_outcome.items():
        for days in days_ago:
            started = NOW - timedelta(days=days)
            run = sync_run_row(session, schedule_id=schedule.id, outcome=outcome,
                               started_at=started,
                               finished_at=None if outcome == "running" else started)
            runs[(outcome, days)] = run.id
    session.commit()
    return runs


def test_purge_removes_exactly_the_expired_rows_and_counts_them(session):
    tenant = tenant_row(session, slug="purge", name="Purge General")
    session.commit()
    expired_result = _job(session, tenant, key="k-expired-result",
                          result_expires_in=-timedelta(minutes=1))
    kept_result = _job(session, tenant, key="k-kept", result_expires_in=timedelta(days=1))
    expired_key = _job(session, tenant, key="k-old", expires_in=-timedelta(seconds=1),
                       result_expires_in=timedelta(days=1))
    failed_recent = _job(session, tenant, status="failed", key="k-failed")
    old, recent = NOW - timedelta(days=RETENTION_DAYS + 1), NOW - timedelta(days=RETENTION_DAYS - 1)
    append_records(db_session=session, records=[
        audit_record(occurred_at=old), audit_record(occurred_at=old),
        audit_record(occurred_at=recent), audit_record(occurred_at=NOW)])
    past, within = SYNC_RUN_RETENTION_DAYS + 1, SYNC_RUN_RETENTION_DAYS - 1
    runs = _sync_runs(session, tenant, succeeded=[past, within, 0], failed=[past],
                      skipped=[past], running=[past, 0])

    report = purge_expired(db_session=session, audit_retention_days=RETENTION_DAYS,
                           sync_run_retention_days=SYNC_RUN_RETENTION_DAYS, now=NOW)

    assert (report.job_results, report.idempotency_keys, report.unit_partials,
            report.snapshot_movements, report.sync_runs, report.audit_events) == (1, 1, 1, 0, 3, 2)
    results = set(session.scalars(select(JobResult.job_id)))
    assert results == {kept_result.id, expired_key.id}
    keys = dict(session.execute(select(Job.id, Job.idempotency_key)).all())
    assert keys[expired_key.id] is None
    assert keys[kept_result.id] == "k-kept" and keys[failed_recent.id] == "k-failed"
    partials = dict(session.execute(select(JobUnit.job_id, JobUnit.partial)).all())
    assert partials[expired_result.id] is None
    assert partials[failed_recent.id] is not None  # a replay may still merge it
    assert partials[kept_result.id] is not None
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == 2
    assert verify_chain(session).ok
    # Finished runs past the retention go; a run still going stays, however old.
    kept_runs = set(session.scalars(select(SyncRun.id)))
    assert kept_runs == {runs[("succeeded", within)], runs[("succeeded", 0)],
                         runs[("running", past)], runs[("running", 0)]}


def test_sent_outbox_messages_go_with_their_jobs_key_and_unsent_ones_stay(session):
    tenant = tenant_row(session, slug="purge", name="Purge General")
    session.commit()
    expired, kept = (_job(session, tenant, key="k-old", expires_in=-timedelta(minutes=1)),
                     _job(session, tenant, key="k-new"))
    sent_at = NOW - timedelta(days=1)
    session.add_all([
        OutboxMessage(task_name="hub.compute.plan_job", job_id=expired.id, sent_at=sent_at),
        OutboxMessage(task_name="hub.io.run_job_unit", job_id=expired.id, unit="ICU-1"),
        OutboxMessage(task_name="hub.compute.plan_job", job_id=kept.id, sent_at=sent_at)])
    session.commit()

    report = purge_expired(db_session=session, audit_retention_days=RETENTION_DAYS, now=NOW)

    assert report.outbox_messages == 1
    left = set(session.execute(select(OutboxMessage.job_id, OutboxMessage.sent_at.is_(None))))
    assert left == {(expired.id, True), (kept.id, False)}


def test_a_second_purge_finds_nothing_more(session):
    tenant = tenant_row(session, slug="purge", name="Purge General")
    session.commit()
    _job(session, tenant, key="k1", result_expires_in=-timedelta(minutes=1))
    _sync_runs(session, tenant, succeeded=[SYNC_RUN_RETENTION_DAYS + 1])
    first = purge_expired(db_session=session, audit_retention_days=RETENTION_DAYS,
                          sync_run_retention_days=SYNC_RUN_RETENTION_DAYS, now=NOW)

    again = purge_expired(db_session=session, audit_retention_days=RETENTION_DAYS,
                          sync_run_retention_days=SYNC_RUN_RETENTION_DAYS, now=NOW)

    assert (first.job_results, first.sync_runs) == (1, 1)
    assert (again.job_results, again.idempotency_keys, again.unit_partials,
            again.snapshot_movements, again.sync_runs, again.audit_events) == (0, 0, 0, 0, 0, 0)


def test_the_retention_purge_sync_runs_on_a_worker_and_keeps_its_report(celery_worker, hub):
    session = hub.database.session
    service.active_syncs(db_session=session, create_missing=True)
    sync_id = service.sync_id_for(db_session=session, kind="retention_purge", owner="hub")
    retention = hub.settings.hub_sync_run_retention_days
    expired = SyncRun(schedule_id=uuid.UUID(sync_id), outcome="succeeded",
                      started_at=datetime.now(UTC) - timedelta(days=retention + 1))
    session.add(expired)
    session.commit()

    task_id = service.trigger_sync(db_session=hub.database.session,
                                   schedule_id=sync_id, tenant_id=None)["task_id"]

    def the_run() -> SyncRun | None:
        with hub.database.new_session() as reader:
            run = reader.scalar(select(SyncRun).where(SyncRun.task_id == task_id))
            assert run is None or run.outcome in {"running", "succeeded"}, run.error
            return run if run is not None and run.outcome == "succeeded" else None

    wait_until(the_run, timeout=30, interval=0.1, description="the purge run to succeed")
    run = the_run()
    assert set(run.report) == {"started_at", "job_results", "idempotency_keys",
                               "unit_partials", "snapshot_movements", "sync_runs",
                               "events", "audit_events", "outbox_messages"}
    assert run.report["sync_runs"] >= 1 and run.error is None and run.duration_ms >= 0
    with hub.database.new_session() as reader:
        assert reader.get(SyncRun, expired.id) is None
    view = service.get_sync(db_session=hub.database.session, settings=hub.settings,
                            schedule_id=sync_id, tenant_id=None)
    assert view["last_run"]["id"] == str(run.id) and view["last_run"]["report"] == run.report


def test_old_events_go_with_their_deliveries_unless_still_being_delivered(session):
    tenant = tenant_row(session, slug="purge", name="Purge General")
    client, _secret = client_row(session, tenant=tenant, scopes=["events:subscribe"])
    subscription = subscription_row(session, tenant=tenant, client=client)
    old, recent = NOW - timedelta(days=31), NOW - timedelta(days=29)

    def event(recorded_at, delivery_status):
        row = Event(tenant_id=tenant.id, type="administration.recorded",
                    product="administration", resource_type="administration",
                    resource_id=uuid.uuid4().hex, occurred_at=recorded_at,
                    recorded_at=recorded_at, payload={})
        session.add(row)
        session.flush()
        session.add(Delivery(event_id=row.id, subscription_id=subscription.id,
                             tenant_id=tenant.id, status=delivery_status))
        return row.id

    delivered_old = event(old, "delivered")
    dead_old = event(old, "dead_lettered")
    pending_old = event(old, "pending")
    delivered_recent = event(recent, "delivered")
    session.commit()

    report = purge_expired(db_session=session, audit_retention_days=RETENTION_DAYS,
                           event_retention_days=30, now=NOW)

    assert report.events == 2
    kept = set(session.scalars(select(Event.id)))
    assert kept == {pending_old, delivered_recent}
    assert {delivered_old, dead_old}.isdisjoint(set(session.scalars(select(Delivery.event_id))))
