"""A client may have at most ``HUB_MAX_ACTIVE_JOBS_PER_CLIENT`` jobs queued or running: one more
is 429 problem+json with Retry-After; re-posting an existing job still answers it; other clients
keep their own quota; a finished or cancelled job frees a slot."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from app.jobs.dispatch import celery_client
from tests.fixtures.jobs import FINAL
from tests.fixtures.problems import assert_retry_later
from tests.fixtures.processes import wait_until
from tests.fixtures.services import hub_app_with
from tests.fixtures.tenants import new_client

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

@pytest.fixture
def capped_app(hub_settings, migrated_database, demo_tenants):
    """The hub with a quota of two active jobs per client."""
    return hub_app_with(hub_settings, hub_max_active_jobs_per_client=2)


def job_body(demo_administration) -> dict:
    truth = demo_administration.admin.ground_truth("north-general")
    return {"type": "administration_counts", "params": {
        "window": {"since": truth["window_start"], "until": truth["window_end"]},
        "units": ["ICU-3"]}}


def submit(client, headers, body, key=None):
    key = key or f"quota-{datetime.now().timestamp():.6f}-{uuid.uuid4().hex[:6]}"
    return client.post("/v1/jobs", json=body, headers={**headers, "Idempotency-Key": key})


@pytest.fixture
def units_held(celery_worker):
    """The worker stops taking unit tasks (queue ``io``): submitted jobs stay active."""
    control = celery_client().control
    control.cancel_consumer("io", destination=[celery_worker.hostname], reply=True)
    try:
        yield
    finally:
        control.add_consumer("io", destination=[celery_worker.hostname], reply=True)


def test_one_job_over_the_cap_is_429_with_retry_after_and_reposts_still_answer(
        capped_app, demo_administration, units_held):
    client = capped_app.test_client()
    headers = new_client(capped_app)[1]
    body = job_body(demo_administration)
    first_key = f"first-{uuid.uuid4().hex}"
    first = submit(client, headers, body, key=first_key)
    second = submit(client, headers, body)
    assert (first.status_code, second.status_code) == (202, 202)
    try:
        over = submit(client, headers, body)

        assert_retry_later(over, 429, "too-many-active-jobs")
        # The same Idempotency-Key answers its job as before: not a new job, not refused.
        again = submit(client, headers, body, key=first_key)
        assert again.status_code == 200 and again.json["id"] == first.json["id"]
        # Another client of the same tenant has its own quota.
        assert submit(client, new_client(capped_app)[1], body).status_code == 202
    finally:
        for job in (first, second):
            client.delete(f"/v1/jobs/{job.json['id']}", headers=headers)


def test_a_cancelled_job_frees_a_slot(capped_app, demo_administration, units_held):
    client = capped_app.test_client()
    headers = new_client(capped_app)[1]
    body = job_body(demo_administration)
    jobs = [submit(client, headers, body).json["id"] for _ in range(2)]
    assert submit(client, headers, body).status_code == 429

    assert client.delete(f"/v1/jobs/{jobs[0]}", headers=headers).status_code == 200
    freed = submit(client, headers, body)

    assert freed.status_code == 202
    for job_id in (jobs[1], freed.json["id"]):
        client.delete(f"/v1/jobs/{job_id}", headers=headers)


def test_a_finished_job_frees_a_slot(capped_app, demo_administration, celery_worker):
    client = capped_app.test_client()
    headers = new_client(capped_app)[1]
    body = job_body(demo_administration)
    jobs = [submit(client, headers, body).json["id"] for _ in range(2)]

    def all_finished() -> bool:
        return all(client.get(f"/v1/jobs/{job_id}", headers=headers).json["status"] in FINAL
                   for job_id in jobs)

    wait_until(all_finished, timeout=90, interval=0.2, description="both jobs to finish")
    assert submit(client, headers, body).status_code == 202
