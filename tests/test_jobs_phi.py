"""The PHI-leak scan of the async path: run both job types on a real worker with a real Flower
listening, then search every place the async path writes to for the eMAR's seeded synthetic
patients (names, MRNs, dates of birth, notes): Celery's result backend, Flower's task API, the
jobs tables, the worker's log and the job API's answers."""

from __future__ import annotations

import ast
import json
import uuid
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from app.jobs.models import DeadLetter, Job, JobResult, JobUnit
from tests.fixtures.jobs import OPERATOR, finished, full_window, submit
from tests.fixtures.phi import leaks_in, redis_dump
from tests.fixtures.processes import wait_until
from tests.fixtures.tenants import forget_breakers

pytestmark = pytest.mark.usefixtures("celery_worker")

PLAN, UNIT, MERGE = "hub.compute.plan_job", "hub.io.run_job_unit", "hub.compute.merge_job_results"
UNIT_RESULT_KEYS = {"job_id", "unit", "status"}


@dataclass
class ScannedJobs:
    """The two jobs the scan runs, what the API answered about them, and Flower's tasks."""

    tenant_id: str
    job_ids: dict[str, str]                      # job type -> job id
    units: dict[str, list[str]]                  # job id -> its units
    bodies: list[str] = field(default_factory=list)
    jobs: dict[str, dict] = field(default_factory=dict)  # job id -> final API view
    flower_tasks: dict[str, dict] = field(default_factory=dict)  # task id -> Flower's view

    def tasks_of(self, job_id: str, name: str | None = None) -> dict[str, dict]:
        return {task_id: task for task_id, task in self.flower_tasks.items()
                if job_id in (task.get("args") or "") and name in (None, task["name"])}


def _args(task: dict) -> list:
    """A task's arguments as Flower shows them (``argsrepr``), parsed back into values."""
    return list(ast.literal_eval(task["args"]))


def _job_units(hub_app, job_id: str) -> list[str]:
    with hub_app.app_context():
        session = hub_app.extensions["hub"].database.session
        return sorted(session.scalars(select(JobUnit.unit).where(
            JobUnit.job_id == uuid.UUID(job_id))))


@pytest.fixture(scope="module")
def scanned_jobs(flower, hub_app, tokens, truth, demo_inventory, demo_administration,
                 demo_pharmacy_received) -> ScannedJobs:
    """Run an hourly administration count, a suppressed reconciliation and a three-way dispense
    reconciliation (its pharmacy side received over HL7, PID and all) for north-general to
    success while Flower listens, and wait until Flower has seen every task of each."""
    for server in (demo_inventory, demo_administration):
        server.admin.clear_faults()
    forget_breakers(hub_app)
    api = hub_app.test_client()
    # The full 14-day window: its bounds lie after every seeded birth date, so a date in the
    # job's params can never be mistaken for a leaked date of birth.
    requests = {
        "administration_counts": {"type": "administration_counts", "params": {
            "window": full_window(truth), "group_by": ["unit", "medication", "hour"]}},
        "dose_reconciliation": {"type": "dose_reconciliation", "params": {
            "window": full_window(truth), "suppress_below": 5}},
        "dispense_reconciliation": {"type": "dispense_reconciliation", "params": {
            "window": full_window(truth)}},
    }
    scanned = ScannedJobs(tenant_id="", job_ids={}, units={})
    for job_type, body in requests.items():
        response = submit(api, tokens, body, key=f"phi-scan-{job_type}-{uuid.uuid4().hex}")
        assert response.status_code == 202, response.json
        scanned.job_ids[job_type] = response.json["id"]
        scanned.bodies.append(response.get_data(as_text=True))
    for job_id in scanned.job_ids.values():
        job = finished(api, tokens, job_id)
        assert job["status"] == "succeeded", job
        scanned.jobs[job_id] = job
        scanned.units[job_id] = _job_units(hub_app, job_id)
        scanned.bodies.append(json.dumps(job))
    with hub_app.app_context():
        session = hub_app.extensions["hub"].database.session
        some_job = session.get(Job, uuid.UUID(scanned.job_ids["administration_counts"]))
        scanned.tenant_id = str(some_job.tenant_id)
    listed = api.get("/v1/jobs?page_size=200", headers=tokens.headers(OPERATOR))
    letters = api.get("/v1/dead-letters", headers=tokens.headers(OPERATOR))
    assert listed.status_code == 200 and letters.status_code == 200
    scanned.bodies += [listed.get_data(as_text=True), letters.get_data(as_text=True)]

    def flower_saw_every_task() -> bool:
        scanned.flower_tasks = flower.get("/api/tasks").json()
        for job_id, units in scanned.units.items():
            mine = scanned.tasks_of(job_id)
            names = sorted(task["name"] for task in mine.values())
            if names != sorted([PLAN, MERGE] + [UNIT] * len(units)):
                return False
            if any(task["state"] != "SUCCESS" for task in mine.values()):
                return False
        return True

    wait_until(flower_saw_every_task, timeout=30, interval=0.25,
               description="Flower to list every task of the jobs as succeeded")
    return scanned


def test_flower_lists_our_tasks_and_their_arguments_are_ids_only(scanned_jobs):
    for job_id, units in scanned_jobs.units.items():
        unit_tasks = scanned_jobs.tasks_of(job_id, UNIT).values()
        (plan,) = scanned_jobs.tasks_of(job_id, PLAN).values()
        (merge,) = scanned_jobs.tasks_of(job_id, MERGE).values()

        assert len(units) >= 20
        assert sorted(_args(task)[1] for task in unit_tasks) == units
        for task in unit_tasks:
            # The job id and the unit: everything else the task reads from the job's row.
            assert _args(task) == [job_id, _args(task)[1]]
            assert ast.literal_eval(task["kwargs"]) == {}
            result = ast.literal_eval(task["result"])
            assert set(result) == UNIT_RESULT_KEYS
            assert result["job_id"] == job_id and result["status"] == "done"
            assert result["unit"] == _args(task)[1]
        assert _args(plan) == _args(merge) == [job_id]
        assert ast.literal_eval(plan["result"]) == {"job_id": job_id, "units": len(units)}
        assert ast.literal_eval(merge["result"]) == {"job_id": job_id, "status": "succeeded"}


def test_flower_task_api_shows_no_phi(scanned_jobs, flower, seeded_identifiers):
    listing = flower.get("/api/tasks")
    job_id = scanned_jobs.job_ids["administration_counts"]
    some = [next(iter(scanned_jobs.tasks_of(job_id, name))) for name in (PLAN, UNIT, MERGE)]
    infos = [flower.get(f"/api/task/info/{task_id}") for task_id in some]

    assert listing.status_code == 200 and job_id in listing.text
    assert leaks_in(listing.text, seeded_identifiers) == []
    for task_id, info in zip(some, infos, strict=True):
        assert info.status_code == 200
        assert info.json()["uuid"] == task_id and job_id in info.json()["args"]
        assert leaks_in(info.text, seeded_identifiers) == []


def test_result_backend_holds_small_id_only_results_and_no_phi(scanned_jobs, hub_app,
                                                                seeded_identifiers):
    redis_client = hub_app.extensions["hub"].redis
    metas = {key: redis_client.get(key)
             for key in redis_client.scan_iter(match="celery-task-meta-*", count=1000)}

    for job_id in scanned_jobs.units:
        for task_id, task in scanned_jobs.tasks_of(job_id).items():
            if task["name"] == PLAN:
                # Sent from the jobs' outbox with no result wanted (sending then needs the
                # broker alone): nothing is stored for it.
                assert f"celery-task-meta-{task_id}" not in metas
                continue
            stored = json.loads(metas[f"celery-task-meta-{task_id}"])
            assert stored["status"] == "SUCCESS"
            # result_extended is off: no task name, args or kwargs next to the result.
            assert not {"name", "args", "kwargs"} & set(stored)
            if task["name"] == UNIT:
                assert set(stored["result"]) == UNIT_RESULT_KEYS
                assert stored["result"]["job_id"] == job_id
    text = "\n".join(f"{key} {value}" for key, value in metas.items())
    assert leaks_in(text, seeded_identifiers) == []
    assert leaks_in(redis_dump(redis_client), seeded_identifiers) == []


def _rows(session, model) -> list[dict]:
    return [{column.name: getattr(row, column.name) for column in model.__table__.columns}
            for row in session.scalars(select(model))]


def test_jobs_results_and_dead_letters_tables_hold_no_phi(scanned_jobs, hub_app,
                                                          seeded_identifiers):
    with hub_app.app_context():
        session = hub_app.extensions["hub"].database.session
        tables = {model.__tablename__: _rows(session, model)
                  for model in (Job, JobResult, JobUnit, DeadLetter)}

    stored_results = {str(row["job_id"]) for row in tables["job_results"]}
    assert set(scanned_jobs.job_ids.values()) <= stored_results
    for name, rows in tables.items():
        assert leaks_in(json.dumps(rows, default=str), seeded_identifiers) == [], name


def test_worker_and_flower_logs_hold_no_phi(scanned_jobs, celery_worker, flower,
                                            seeded_identifiers):
    worker_log = celery_worker.log_text()

    for job_id in scanned_jobs.units:
        assert job_id in worker_log  # the scan reads the log the jobs were run under
    assert leaks_in(worker_log, seeded_identifiers) == []
    assert leaks_in(flower.log_text(), seeded_identifiers) == []


def test_job_api_answers_hold_no_phi(scanned_jobs, seeded_identifiers):
    counts = scanned_jobs.jobs[scanned_jobs.job_ids["administration_counts"]]["result"]
    reconciliation = scanned_jobs.jobs[scanned_jobs.job_ids["dose_reconciliation"]]["result"]

    assert counts["records"] > 0 and {"unit", "medication", "hour"} <= set(counts["groups"][0])
    assert reconciliation["suppressed_below"] == 5
    dispensing = scanned_jobs.jobs[scanned_jobs.job_ids["dispense_reconciliation"]]["result"]
    assert dispensing["totals"]["pharmacy_dispenses"] > 0
    assert leaks_in("\n".join(scanned_jobs.bodies), seeded_identifiers) == []


def test_flower_api_needs_basic_auth(scanned_jobs, flower):
    some_task = next(iter(scanned_jobs.flower_tasks))

    assert flower.get("/api/tasks", auth=None).status_code == 401
    assert flower.get("/api/tasks", auth=(flower.auth[0], "wrong")).status_code == 401
    assert flower.get(f"/api/task/info/{some_task}", auth=None).status_code == 401


def test_flower_metrics_answer_without_auth_by_design_and_hold_no_phi(
        scanned_jobs, flower, seeded_identifiers):
    # Flower serves Prometheus metrics without auth (for scrapers): labels are worker and
    # task names only, so they must never carry anything else.
    metrics = flower.get("/metrics", auth=None)

    assert metrics.status_code == 200
    assert "flower_events_total{" in metrics.text and f'task="{UNIT}"' in metrics.text
    assert "flower_task_runtime_seconds" in metrics.text
    assert leaks_in(metrics.text, seeded_identifiers) == []
