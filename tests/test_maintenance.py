"""The retention purge removes exactly what has expired, and reports what it removed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.chain import append_records, verify_chain
from app.audit.models import AuditEvent
from app.database import make_engine, upgrade_schema
from app.jobs.models import Job, JobResult, JobUnit
from app.maintenance.service import purge_expired
from app.tenants.models import Tenant
from tests.test_audit_chain import audit_record
from tests.test_migrations import _fresh_database_url

NOW = datetime(2026, 11, 24, 3, 15, tzinfo=UTC)
RETENTION_DAYS = 2192


@pytest.fixture
def session(database_url, tmp_path):
    url, drop = _fresh_database_url(database_url, tmp_path)
    upgrade_schema(url)
    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as db_session:
        yield db_session
    engine.dispose()
    drop()


def _job(session, tenant, *, status="succeeded", key=None, expires_in=timedelta(hours=1),
         result_expires_in=None, partial=True) -> Job:
    job = Job(tenant_id=tenant.id, type="administration_counts", params={}, status=status,
              idempotency_key=key, request_hash="h", units_total=1, units_done=1,
              expires_at=NOW + expires_in)
    session.add(job)
    session.flush()
    session.add(JobUnit(job_id=job.id, unit="ICU-1", status="done",
                        partial={"unit": "ICU-1", "records": 1, "groups": []} if partial else None))
    if result_expires_in is not None:
        session.add(JobResult(job_id=job.id, result={"records": 1},
                              expires_at=NOW + result_expires_in))
    session.commit()
    return job


def test_purge_removes_exactly_the_expired_rows_and_counts_them(session):
    tenant = Tenant(slug=f"purge-{uuid.uuid4().hex[:6]}", name="Purge General")
    session.add(tenant)
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

    report = purge_expired(db_session=session, audit_retention_days=RETENTION_DAYS, now=NOW)

    assert (report.job_results, report.idempotency_keys, report.unit_partials,
            report.audit_events) == (1, 1, 1, 2)
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


def test_a_second_purge_finds_nothing_more(session):
    tenant = Tenant(slug=f"purge-{uuid.uuid4().hex[:6]}", name="Purge General")
    session.add(tenant)
    session.commit()
    _job(session, tenant, key="k1", result_expires_in=-timedelta(minutes=1))
    purge_expired(db_session=session, audit_retention_days=RETENTION_DAYS, now=NOW)

    again = purge_expired(db_session=session, audit_retention_days=RETENTION_DAYS, now=NOW)

    assert (again.job_results, again.idempotency_keys, again.unit_partials,
            again.audit_events) == (0, 0, 0, 0)


def test_the_nightly_task_runs_on_a_worker_and_remembers_its_report(celery_worker, hub_app):
    import json

    from app.jobs.dispatch import celery_client
    from app.maintenance.service import LAST_PURGE_KEY

    report = celery_client().send_task("hub.maintenance.purge_expired_data").get(timeout=30)

    assert set(report) == {"started_at", "job_results", "idempotency_keys", "unit_partials",
                           "audit_events"}
    stored = json.loads(hub_app.extensions["hub"].redis.get(LAST_PURGE_KEY))
    assert stored == report
