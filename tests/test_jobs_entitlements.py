"""The entitlement gate in the worker and at replay: a job submitted before its tenant lost the
product (or before its client was disabled) reads no more of System B — its remaining units are
refused without a downstream call, the job fails saying why, and the refusal is audited."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from app.jobs.models import DeadLetter, Job, JobUnit
from tests.fixtures.cli import hub_cli
from tests.fixtures.factories import dead_letter_row, job_row, job_unit_row
from tests.fixtures.jobs import OPERATOR, finished, full_window, submit, warm_unit_catalogue
from tests.fixtures.problems import assert_problem
from tests.fixtures.processes import wait_until
from tests.fixtures.tenants import new_client

pytestmark = pytest.mark.usefixtures("clean_lookup_state", "celery_worker")

TENANT = "north-general"
REFUSED_OPERATION = "job.unit.refused"
# Slow enough that most units are still queued when the test revokes, fast enough to finish.
SLOW_SYSTEM_B_MS = 1500


def _session(hub_app):
    return hub_app.extensions["hub"].database.session


def _set_entitlement(hub_app, product_code: str, *, granted: bool) -> None:
    """Grant or revoke through the entitlements service and commit, as the CLI does."""
    from app.entitlements.service import grant_entitlement, revoke_entitlement
    from app.tenants.service import get_product, get_tenant_by_slug

    with hub_app.app_context():
        session = _session(hub_app)
        tenant = get_tenant_by_slug(db_session=session, slug=TENANT)
        product = get_product(db_session=session, code=product_code)
        (grant_entitlement if granted else revoke_entitlement)(
            db_session=session, tenant=tenant, product=product)
        session.commit()


@pytest.fixture
def administration_entitlement(hub_app):
    """Revoke north-general's administration entitlement in the test; granted again after."""
    yield lambda: _set_entitlement(hub_app, "administration", granted=False)
    _set_entitlement(hub_app, "administration", granted=True)


def _system_b_calls(demo_administration) -> int:
    return demo_administration.admin.requests_count()["by_site"].get(TENANT, 0)


def _unit_counts(hub_app, job_id: str) -> dict[str, int]:
    with hub_app.app_context():
        rows = _session(hub_app).execute(
            select(JobUnit.status, func.count()).where(JobUnit.job_id == uuid.UUID(job_id))
            .group_by(JobUnit.status)).all()
        _session(hub_app).rollback()
    return dict(rows)


def _refusals(hub_app, job_request_id: str | None = None) -> list:
    from app.audit.service import list_events
    from app.tenants.service import get_tenant_by_slug

    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        tenant = get_tenant_by_slug(db_session=_session(hub_app), slug=TENANT)
        events = list_events(redis_client=hub.redis, db_session=_session(hub_app),
                             tenant_id=str(tenant.id), operation=REFUSED_OPERATION,
                             cursor_key=hub.settings.hub_secret_key).events
    return [event for event in events
            if job_request_id is None or event.request_id == job_request_id]


def _slow_job(api, tokens, truth, hub_app, demo_administration, *,
              client: str = OPERATOR) -> tuple[str, int]:
    """Submit a counts job over eight units against a slow System B; return its id and unit
    count once a unit is reading System B (the rest still queued)."""
    warm_unit_catalogue(hub_app)  # the submission reads no System B itself
    with hub_app.app_context():
        from app.jobs.service import known_units
        from app.tenants.service import get_tenant_by_slug

        hub = hub_app.extensions["hub"]
        units = known_units(db_session=hub.database.session, redis_client=hub.redis,
                            settings=hub.settings, tenant=get_tenant_by_slug(
                                db_session=hub.database.session, slug=TENANT),
                            job_type="administration_counts")[:8]
    demo_administration.admin.set_faults(site=TENANT, latency_ms=SLOW_SYSTEM_B_MS)
    demo_administration.admin.reset_counts()
    response = submit(api, tokens, {"type": "administration_counts", "params": {
        "window": full_window(truth), "units": units}}, client=client)
    assert response.status_code == 202, response.json
    wait_until(lambda: _system_b_calls(demo_administration) >= 1, timeout=30, interval=0.05,
               description="a unit to read System B")
    return response.json["id"], len(units)


def _settled(hub_app, job_id: str) -> dict[str, int]:
    """Wait until no unit of the job is running (units in flight at the refusal finish)."""
    seen = {}

    def settled():
        seen.update(counts=_unit_counts(hub_app, job_id))
        return not seen["counts"].get("running") and not seen["counts"].get("pending")

    wait_until(settled, timeout=30, interval=0.2, description="the job's units to settle")
    return seen["counts"]


def test_revoking_the_product_refuses_a_running_jobs_remaining_units_without_downstream_calls(
        api, tokens, truth, hub_app, demo_administration, administration_entitlement):
    job_id, units = _slow_job(api, tokens, truth, hub_app, demo_administration)

    administration_entitlement()  # revoke

    job = finished(api, tokens, job_id, timeout=60)
    counts = _settled(hub_app, job_id)
    assert job["status"] == "failed" and job["result"] is None
    assert "not entitled to the administration product" in job["error"]
    # Only units already reading when the entitlement went ran; every other unit was refused
    # before it called System B (one call per unit: a unit's records fit in one page).
    done = counts.get("done", 0)
    assert counts.get("failed", 0) > 0 and done + counts["failed"] == units
    assert _system_b_calls(demo_administration) == done
    with hub_app.app_context():
        request_id = _session(hub_app).get(Job, uuid.UUID(job_id)).request_id
    refusals = _refusals(hub_app, request_id)
    assert refusals and {(event.client_id, event.status_code, event.outcome,
                          event.resource_type) for event in refusals} == {
        (OPERATOR, 403, "denied", "jobs")}


class _ClientTokens:
    """A token book of one client, shaped like the ``tokens`` fixture for ``submit``."""

    def __init__(self, headers: dict):
        self._headers = headers

    def headers(self, _client: str, **extra: str) -> dict:
        return {**self._headers, **extra}


def test_disabling_the_submitting_client_refuses_its_jobs_remaining_units(
        api, tokens, truth, hub_app, demo_administration):
    client_id, headers = new_client(hub_app)
    job_id, units = _slow_job(api, _ClientTokens(headers), truth, hub_app, demo_administration,
                              client=client_id)

    disabled = hub_cli(hub_app, "clients")("disable", client_id)

    assert disabled.exit_code == 0, disabled.output
    job = finished(api, tokens, job_id, timeout=60)  # the tenant's operator may still look
    counts = _settled(hub_app, job_id)
    assert job["status"] == "failed"
    assert "client that made this request has been disabled" in job["error"]
    assert counts.get("failed", 0) > 0
    assert _system_b_calls(demo_administration) == counts.get("done", 0)
    assert {event.client_id for event in _refusals(hub_app)} >= {client_id}


@pytest.fixture
def dead_letter(hub_app):
    """A failed job of north-general's operator with one open dead letter (its unit ED-1)."""
    from app.clients.service import get_client

    with hub_app.app_context():
        session = _session(hub_app)
        client = get_client(db_session=session, client_id=OPERATOR)
        job = job_row(session, tenant_id=client.tenant_id, client_id=client.id, status="failed",
                      units_done=0, error="1 of 1 units failed after retries")
        job_unit_row(session, job, unit="ED-1", status="failed", attempts=4,
                     error="DownstreamUnavailable")
        letter = dead_letter_row(session, job, unit="ED-1")
        session.commit()
        return str(letter.id)


def test_replaying_a_dead_letter_after_revocation_is_403_without_downstream_calls(
        api, tokens, hub_app, demo_administration, administration_entitlement, dead_letter):
    administration_entitlement()  # revoke
    demo_administration.admin.reset_counts()

    response = api.post(f"/v1/dead-letters/{dead_letter}/replay",
                        headers=tokens.headers(OPERATOR))

    assert_problem(response, 403, "not-entitled")
    assert "administration" in response.json["detail"]
    with hub_app.app_context():
        letter = _session(hub_app).get(DeadLetter, uuid.UUID(dead_letter))
        assert letter.status == "open"  # still there to replay once entitled again
        assert _session(hub_app).get(Job, letter.job_id).status == "failed"
    assert _system_b_calls(demo_administration) == 0


def test_replaying_from_the_cli_after_revocation_fails_clearly(
        hub_app, administration_entitlement, dead_letter):
    administration_entitlement()  # revoke

    result = hub_cli(hub_app, "dead-letters")("replay", dead_letter)

    assert result.exit_code == 1
    assert "not entitled to the administration product" in result.output
