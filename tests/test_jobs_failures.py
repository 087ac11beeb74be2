"""Jobs when things go wrong: downstream failures retried then dead-lettered and replayed,
and a worker killed with SIGKILL mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import select

from app.jobs.models import JobUnit
from app.settings import PROJECT_ROOT
from tests.fixtures.jobs import OPERATOR, finished, full_window, job_in_status, submit, warm_unit_catalogue
from tests.fixtures.processes import stop_process_group, wait_until

pytestmark = pytest.mark.usefixtures("clean_lookup_state", "celery_worker")


def test_failing_units_retry_then_dead_letter_and_replay_finishes_the_job(
        api, tokens, truth, demo_administration, hub_app):
    warm_unit_catalogue(hub_app)  # the submission itself reads it; the units' reads will fail
    demo_administration.admin.set_faults(site="north-general", error_rate=1)
    body = {"type": "administration_counts",
            "params": {"window": full_window(truth), "units": ["ICU-1", "ICU-2"]}}
    job_id = submit(api, tokens, body).json["id"]

    failed = finished(api, tokens, job_id, timeout=120)
    calls_while_failing = demo_administration.admin.requests_count()["total"]

    assert failed["status"] == "failed"
    assert failed["failed_units"] == ["ICU-1", "ICU-2"]
    assert "replay" in failed["error"]
    assert calls_while_failing >= 2 * 4  # each unit: first try + 3 retries (several attempts)
    letters = api.get("/v1/dead-letters", headers=tokens.headers(OPERATOR)).json
    mine = [letter for letter in letters if letter["job_id"] == job_id]
    assert sorted(letter["unit"] for letter in mine) == ["ICU-1", "ICU-2"]
    assert all(letter["attempts"] == 4 and "DownstreamUnavailable" in letter["error"]
               for letter in mine)

    demo_administration.admin.clear_faults()
    for letter in mine:
        replayed = api.post(f"/v1/dead-letters/{letter['id']}/replay",
                            headers=tokens.headers(OPERATOR))
        assert replayed.status_code == 202

    # Each replay merges again; the job is failed until the last missing unit is in.
    job = job_in_status(api, tokens, job_id, {"succeeded"}, timeout=60)
    expected = sum(row["count"] for row in truth["administration"]["by_site_ward_ndc11_date"]
                   if row["ward"] in ("ICU1", "ICU2"))
    assert sum(group["count"] for group in job["result"]["groups"]) == expected
    again = api.post(f"/v1/dead-letters/{mine[0]['id']}/replay", headers=tokens.headers(OPERATOR))
    assert again.status_code == 409


def test_another_tenant_cannot_replay_a_dead_letter(api, tokens):
    response = api.post(f"/v1/dead-letters/{uuid.uuid4()}/replay",
                        headers=tokens.headers("river-valley-operator"))

    assert response.status_code == 404


def _start_worker(environment, log_path, hostname):
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "--app", "tasks", "worker", "--queues", "io",
             "--concurrency", "2", "--pool", "prefork", "--hostname", hostname,
             "--loglevel", "INFO"],
            cwd=PROJECT_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)


def test_sigkilled_worker_loses_no_unit(api, tokens, truth, hub_environment, hub_app,
                                        demo_administration, tmp_path, celery_worker):
    from app.jobs.dispatch import celery_client

    # A short visibility timeout, so the broker hands the killed worker's tasks to the next
    # worker within seconds rather than the production hour (RabbitMQ requeues at once).
    environment = {**os.environ, **hub_environment, "HUB_TASK_TIME_LIMIT": "8",
                   "HUB_VISIBILITY_TIMEOUT": "10"}
    doomed_name = f"doomed-{uuid.uuid4().hex[:6]}@localhost"
    doomed = _start_worker(environment, tmp_path / "doomed.log", doomed_name)
    client = celery_client()
    wait_until(lambda: client.control.ping(destination=[doomed_name], timeout=1.0), timeout=60,
               interval=0.5, description="the doomed worker")
    demo_administration.admin.set_faults(latency_ms=1500)
    job_id = submit(api, tokens, {"type": "administration_counts",
                                  "params": {"window": full_window(truth)}}).json["id"]

    killed: list[str] = []

    def doomed_is_busy():
        active = client.control.inspect(destination=[doomed_name], timeout=1.0).active() or {}
        killed[:] = [task["id"] for task in active.get(doomed_name, [])
                     if task["name"] == "hub.io.run_job_unit" and job_id in str(task["args"])]
        return bool(killed)

    wait_until(doomed_is_busy, timeout=60, interval=0.2, description="a unit on the doomed worker")
    killed_at = time.monotonic()
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    demo_administration.admin.clear_faults()
    successor = _start_worker(environment, tmp_path / "successor.log",
                              f"successor-{uuid.uuid4().hex[:6]}@localhost")
    try:
        job = finished(api, tokens, job_id, timeout=120)
    finally:
        stop_process_group(successor)

    print(f"job finished {time.monotonic() - killed_at:.1f}s after the kill")
    assert job["status"] == "succeeded", job
    assert job["result"]["records"] == truth["administration"]["administrations_by_site"][
        "north-general"]
    # The units the killed worker was running were delivered again, and finished elsewhere.
    # (The successor puts them back on the queue; it or the session's worker runs them.)
    logs = (tmp_path / "successor.log").read_text() + celery_worker.log_text()
    assert all(f"run_job_unit[{task_id}] succeeded" in logs for task_id in killed)
    with hub_app.app_context():
        session = hub_app.extensions["hub"].database.session
        statuses = set(session.scalars(select(JobUnit.status).where(
            JobUnit.job_id == uuid.UUID(job_id))).all())
    assert statuses == {"done"}


def test_reconciler_merges_a_job_whose_merge_was_lost(api, tokens, truth, hub_app):
    from datetime import timedelta

    from sqlalchemy import update

    from app.database import utcnow
    from app.jobs.dispatch import celery_client
    from app.jobs.models import Job

    job_id = submit(api, tokens, {"type": "administration_counts",
                                  "params": {"window": full_window(truth),
                                             "units": ["ICU-1"]}}).json["id"]
    assert finished(api, tokens, job_id)["status"] == "succeeded"
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        # As if the chord body had never run: units done long ago, the job still running.
        session = hub.database.session
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(
            status="running", finished_at=None))
        session.execute(update(JobUnit).where(JobUnit.job_id == uuid.UUID(job_id)).values(
            updated_at=utcnow() - timedelta(minutes=5)))
        session.commit()
        # The re-sent merge is stamped with its tenant, so its log lines name it.
        from app.jobs.service import jobs_awaiting_merge
        from app.tenants.models import Tenant

        tenant = session.get(Tenant, session.get(Job, uuid.UUID(job_id)).tenant_id).slug
        assert (job_id, tenant) in jobs_awaiting_merge(db_session=session, idle_seconds=60)

    celery_client().send_task("hub.maintenance.reconcile_jobs")

    job = finished(api, tokens, job_id, timeout=30)
    assert job["status"] == "succeeded" and job["result"]["records"] > 0
