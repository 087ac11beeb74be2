"""The nightly pre-aggregation: the previous day's administration counts of a tenant, submitted
as an ordinary ``administration_counts`` job so it runs through the job pipeline and shows in
``/v1/jobs`` like any other."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import redis
from sqlalchemy.orm import Session

from app.canonical.times import format_utc
from app.database import utcnow
from app.jobs.service import submit_and_dispatch
from app.settings import Settings
from app.tenants.models import Tenant
from app.tenants.service import get_active_connection

JOB_TYPE = "administration_counts"


def previous_local_day(zone: ZoneInfo, now: datetime) -> tuple[date, datetime, datetime]:
    """The last whole day in ``zone`` before ``now``, and its bounds in UTC (a hospital counts
    its days from local midnight; DST days are 23 or 25 hours long)."""
    day = now.astimezone(zone).date() - timedelta(days=1)
    since = datetime.combine(day, time.min, zone).astimezone(UTC)
    until = datetime.combine(day + timedelta(days=1), time.min, zone).astimezone(UTC)
    return day, since, until


def idempotency_key(day: date) -> str:
    return f"nightly-administration-counts:{day.isoformat()}"


def submit_previous_day_counts(*, db_session: Session, redis_client: redis.Redis,
                               settings: Settings, tenant: Tenant,
                               now: datetime | None = None) -> dict:
    """Submit (once per day: the idempotency key names the day) the counts job of the
    tenant's previous local day; report which day and which job."""
    connection = get_active_connection(db_session=db_session, tenant_id=tenant.id,
                                       product="administration")
    zone = ZoneInfo(connection.timezone if connection else "UTC")
    day, since, until = previous_local_day(zone, now or utcnow())
    params = {"window": {"since": format_utc(since), "until": format_utc(until)},
              "group_by": ["unit", "medication"]}
    submission = submit_and_dispatch(
        db_session=db_session, redis_client=redis_client, settings=settings,
        tenant_id=str(tenant.id), client_id=None, job_type=JOB_TYPE, raw_params=params,
        idempotency_key=idempotency_key(day), request_id=None)
    job = submission.job
    return {"day": day.isoformat(), "job_id": str(job.id),
            "submitted": submission.created, "job_status": job.status}
