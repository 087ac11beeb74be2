"""Async jobs end to end on a real worker: submit, poll, counts against the demo systems'
ground truth, idempotency, validation, tenant isolation, cancel."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import pytest

from app.canonical.units import canonical_unit
from tests.fixtures.jobs import FINAL, OPERATOR, finished, full_window, idempotency_key, submit
from tests.fixtures.problems import assert_problem
from tests.fixtures.processes import wait_until

pytestmark = pytest.mark.usefixtures("clean_lookup_state", "celery_worker")


def test_administration_counts_by_unit_and_medication_match_the_ground_truth(api, tokens, truth):
    response = submit(api, tokens, {"type": "administration_counts",
                                    "params": {"window": full_window(truth)}})
    assert response.status_code == 202, response.json
    assert response.headers["Location"].endswith(f"/v1/jobs/{response.json['id']}")

    job = finished(api, tokens, response.json["id"])

    assert job["status"] == "succeeded", job
    assert job["progress"]["units_done"] == job["progress"]["units_total"] >= 20
    expected = defaultdict(int)
    for row in truth["administration"]["by_site_ward_ndc11_date"]:
        expected[(canonical_unit(row["ward"]), row["ndc11"])] += row["count"]
    got = {(group["unit"], group["medication"]): group["count"]
           for group in job["result"]["groups"]}
    assert got == dict(expected)
    assert job["result"]["records"] == truth["administration"]["administrations_by_site"][
        "north-general"]


def test_hourly_counts_of_one_medication_match_the_ground_truth(api, tokens, truth):
    hourly = truth["administration"]["by_site_ndc11_hour"]
    ndc11 = max({row["ndc11"] for row in hourly},
                key=lambda code: sum(r["count"] for r in hourly if r["ndc11"] == code))
    dashed = f"{ndc11[:5]}-{ndc11[5:9]}-{ndc11[9:]}"
    response = submit(api, tokens, {"type": "administration_counts", "params": {
        "window": full_window(truth), "medication": dashed, "group_by": ["hour"]}})

    job = finished(api, tokens, response.json["id"])

    expected = {row["hour"]: row["count"] for row in hourly if row["ndc11"] == ndc11}
    got = {group["hour"]: group["count"] for group in job["result"]["groups"]}
    assert got == expected


def test_dose_reconciliation_matches_the_ground_truth(api, tokens, truth):
    until = datetime.fromisoformat(truth["administration"]["window_end"])
    window = {"since": (until - timedelta(days=31)).isoformat(), "until": until.isoformat()}
    response = submit(api, tokens, {"type": "dose_reconciliation", "params": {"window": window}})

    job = finished(api, tokens, response.json["id"])

    assert job["status"] == "succeeded", job
    expected = {row["unit"]: (row["matched"], row["administered_without_dispense"],
                              row["dispensed_never_administered"])
                for row in truth["inventory"]["reconciliation_by_site_unit"]}
    got = {row["unit"]: (row["matched"], row["administered_without_dispense"],
                         row["dispensed_never_administered"])
           for row in job["result"]["units"]}
    assert got == expected
    assert job["result"]["totals"]["administered_without_dispense"] > 0


def test_same_idempotency_key_and_body_answer_the_same_job(api, tokens, truth):
    body = {"type": "administration_counts", "params": {"window": full_window(truth)}}
    key = idempotency_key("same")

    first = submit(api, tokens, body, key=key)
    second = submit(api, tokens, body, key=key)

    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json["id"] == second.json["id"]


def test_same_idempotency_key_with_another_body_is_409(api, tokens, truth):
    key = idempotency_key("clash")
    submit(api, tokens, {"type": "administration_counts", "params": {"window": full_window(truth)}},
           key=key)

    response = submit(api, tokens, {"type": "dose_reconciliation",
                                    "params": {"window": full_window(truth)}}, key=key)

    assert_problem(response, 409)


@pytest.mark.parametrize("body, field", [
    ({"type": "patient_export", "params": {}}, "type"),
    ({"type": "administration_counts", "params": {"window": {
        "since": "2026-09-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}}}, "params"),
    ({"type": "administration_counts", "params": {"window": {
        "since": "2026-11-10T00:00:00Z", "until": "2026-11-01T00:00:00Z"}}}, "params"),
    ({"type": "administration_counts", "params": {"window": {
        "since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"},
        "units": ["ICU-99"]}}, "params"),
    ({"type": "administration_counts", "params": {"window": {
        "since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"},
        "patient_mrn": "MRN00000001"}}, "params"),
    ({"type": "administration_counts"}, "params"),
])
def test_bad_job_requests_are_422_and_store_nothing(api, tokens, body, field):
    before = api.get("/v1/jobs?page_size=200", headers=tokens.headers(OPERATOR)).json["items"]

    response = submit(api, tokens, body)

    assert response.status_code == 422, response.json
    assert field in response.json["errors"]["json"]
    assert "MRN00000001" not in response.get_data(as_text=True)
    after = api.get("/v1/jobs?page_size=200", headers=tokens.headers(OPERATOR)).json["items"]
    assert len(after) == len(before)


def test_missing_idempotency_key_is_422(api, tokens, truth):
    response = api.post("/v1/jobs", json={"type": "administration_counts",
                                          "params": {"window": full_window(truth)}},
                        headers=tokens.headers(OPERATOR))

    assert response.status_code == 422
    assert "Idempotency-Key" in response.json["errors"]["headers"]


def test_another_tenants_job_is_404(api, tokens, truth):
    job_id = submit(api, tokens, {"type": "administration_counts",
                                  "params": {"window": full_window(truth)}}).json["id"]
    stranger = tokens.headers("river-valley-operator")

    assert api.get(f"/v1/jobs/{job_id}", headers=stranger).status_code == 404
    assert api.delete(f"/v1/jobs/{job_id}", headers=stranger).status_code == 404
    assert job_id not in {job["id"] for job in api.get(
        "/v1/jobs?page_size=200", headers=stranger).json["items"]}


def test_jobs_need_the_jobs_scopes(api, tokens, truth):
    response = api.post("/v1/jobs", json={"type": "administration_counts",
                                          "params": {"window": full_window(truth)}},
                        headers=tokens.headers("north-general-inventory",
                                               **{"Idempotency-Key": idempotency_key("scope")}))

    assert response.status_code == 403


def test_reconciliation_needs_both_products(api, tokens, truth):
    response = submit(api, tokens, {"type": "dose_reconciliation",
                                    "params": {"window": full_window(truth)}},
                      client="lakeside-clinic-operator")

    assert response.status_code == 403
    assert response.json["type"].endswith("/not-entitled")


def test_progress_moves_while_units_finish(api, tokens, truth, demo_administration):
    demo_administration.admin.set_faults(latency_ms=150)
    job_id = submit(api, tokens, {"type": "administration_counts",
                                  "params": {"window": full_window(truth)}}).json["id"]
    seen = set()

    def moving():
        job = api.get(f"/v1/jobs/{job_id}", headers=tokens.headers(OPERATOR)).json
        seen.add(job["progress"]["units_done"])
        return job["status"] in FINAL

    wait_until(moving, timeout=120, interval=0.1, description="the job to finish")
    total = api.get(f"/v1/jobs/{job_id}", headers=tokens.headers(OPERATOR)).json["progress"]
    assert any(0 < done < total["units_total"] for done in seen), seen
    assert total["units_done"] == total["units_total"]


def test_cancel_stops_a_running_job(api, tokens, truth, demo_administration):
    demo_administration.admin.set_faults(latency_ms=400)
    job_id = submit(api, tokens, {"type": "administration_counts",
                                  "params": {"window": full_window(truth)}}).json["id"]

    cancelled = api.delete(f"/v1/jobs/{job_id}", headers=tokens.headers(OPERATOR))
    demo_administration.admin.clear_faults()

    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    job = finished(api, tokens, job_id)
    assert job["status"] == "cancelled" and job["result"] is None
    again = api.delete(f"/v1/jobs/{job_id}", headers=tokens.headers(OPERATOR))
    assert again.status_code == 409


def test_an_expired_idempotency_key_may_be_used_again(api, tokens, truth, hub_app):
    from sqlalchemy import update

    from app.database import utcnow
    from app.jobs.models import Job

    key = idempotency_key("expiring")
    first = submit(api, tokens, {"type": "administration_counts",
                                 "params": {"window": full_window(truth)}}, key=key).json["id"]
    with hub_app.app_context():
        session = hub_app.extensions["hub"].database.session
        session.execute(update(Job).where(Job.idempotency_key == key).values(
            expires_at=utcnow() - timedelta(minutes=1)))
        session.commit()

    again = submit(api, tokens, {"type": "dose_reconciliation",
                                 "params": {"window": full_window(truth)}}, key=key)

    assert again.status_code == 202 and again.json["id"] != first


def test_job_list_pages_newest_first_and_filters_by_type(api, tokens, truth):
    for _ in range(3):
        submit(api, tokens, {"type": "administration_counts",
                             "params": {"window": full_window(truth), "units": ["ED-1"]}})
    seen, url = [], "/v1/jobs?page_size=2&type=administration_counts"
    while url:
        page = api.get(url, headers=tokens.headers(OPERATOR)).json
        seen += page["items"]
        url = (f"/v1/jobs?page_size=2&type=administration_counts&cursor={page['next_cursor']}"
               if page["next_cursor"] else None)

    assert len(seen) >= 3 and len({job["id"] for job in seen}) == len(seen)
    assert {job["type"] for job in seen} == {"administration_counts"}
    created = [job["created_at"] for job in seen]
    assert created == sorted(created, reverse=True)
    bad = api.get("/v1/jobs?cursor=garbage", headers=tokens.headers(OPERATOR))
    assert bad.status_code == 422


def test_a_job_the_tenants_connector_cannot_answer_is_501_before_anything_is_stored(
        api, hub_app, demo_inventory):
    """A tenant whose inventory is reached through the legacy API's connector (which lists
    no units and no dispenses) cannot run a dose reconciliation: refused at submission."""
    from sqlalchemy import func, select

    from app.entitlements.service import forget_entitlements, grant_entitlement
    from app.jobs.models import Job
    from app.tenants.service import ensure_connection, get_product
    from tests.fixtures.factories import client_row, tenant_row
    from tests.fixtures.tenants import client_token

    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        tenant = tenant_row(session, slug="legacy-only")
        for code in ("inventory", "administration"):
            product = get_product(db_session=session, code=code)
            ensure_connection(db_session=session, tenant=tenant, product=product,
                              base_url=demo_inventory.base_url, credential_ref="env:UNUSED",
                              connector="inventory-legacy" if code == "inventory" else None)
            grant_entitlement(db_session=session, tenant=tenant, product=product)
        client, secret = client_row(session, tenant=tenant, scopes=["jobs:write", "jobs:read"])
        tenant_id, client_id = tenant.id, client.client_id
        session.commit()
    forget_entitlements()
    token = client_token(hub_app, client_id, secret)["access_token"]

    response = api.post("/v1/jobs", json={"type": "dose_reconciliation", "params": {"window": {
        "since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"}}},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": idempotency_key()})

    assert_problem(response, 501, "not-offered-by-system")
    with hub_app.app_context():
        stored = hub.database.session.scalar(
            select(func.count()).select_from(Job).where(Job.tenant_id == tenant_id))
    assert stored == 0
