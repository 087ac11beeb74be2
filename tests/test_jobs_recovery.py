"""Fault drills of the job engine: a worker parent SIGKILLed mid-job on the Redis broker (its
units run again within about a minute, not after the visibility timeout), the database made
unavailable mid-job and restored (every job ends final and correct), and a worker stopped with
SIGTERM (its current unit finishes, or goes back on the queue: never lost).

Each drill runs on a broker of its own (an embedded Redis started here, with the session's
database), with worker nodes it starts and stops itself, so the session's worker and queues
are untouched. Beat is not started: the test sends the orphan check on its beat schedule."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from app.jobs.models import JobUnit
from tests.fixtures.fault_stacks import WorkerNode, start_worker_node
from tests.fixtures.jobs import FINAL, finished, full_window, submit
from tests.fixtures.outages import database_outage
from tests.fixtures.processes import wait_until
from tests.fixtures.services import hub_app_with, start_embedded_redis

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("clean_lookup_state")]

ORPHAN_CHECK = "hub.maintenance.redispatch_orphaned_units"
# How long the database drill keeps the database unavailable: long enough that every step in
# flight meets it (SQLite: past its 10 s busy timeout); longer outages can be measured with
# HUB_DRILL_DATABASE_OUTAGE_SECONDS (e.g. 30, the issue's).
DATABASE_OUTAGE_SECONDS = float(os.environ.get("HUB_DRILL_DATABASE_OUTAGE_SECONDS", "15"))


@pytest.fixture(scope="module")
def drill_broker(tmp_path_factory):
    """A Redis of the drills' own, as broker and result backend."""
    server = start_embedded_redis(tmp_path_factory.mktemp("drill-redis"))
    yield server
    server.stop()


@pytest.fixture
def drill_api(hub_settings, hub_app, drill_broker):
    """The hub's API (test client) sending its jobs to the drill's broker."""
    app = hub_app_with(hub_settings, celery_broker_url=drill_broker.url,
                       celery_result_backend=drill_broker.url)
    yield app.test_client()
    app.extensions["hub"].database.engine.dispose()


@pytest.fixture
def nodes(hub_environment, drill_broker, tmp_path):
    """Start worker nodes on the drill's broker (``start(name, queues, **settings)``); each is
    stopped (its whole process group) after the test."""
    started: list[WorkerNode] = []

    def start(name: str, queues: str = "io,compute,maintenance", **settings: str) -> WorkerNode:
        environment = {**hub_environment, "CELERY_BROKER_URL": drill_broker.url,
                       "CELERY_RESULT_BACKEND": drill_broker.url,
                       # The production visibility timeout: a lost unit must not wait for it.
                       "HUB_VISIBILITY_TIMEOUT": "1200", **settings}
        node = start_worker_node(environment, hostname=f"{name}-{uuid.uuid4().hex[:6]}@localhost",
                                 log_dir=tmp_path, queues=tuple(queues.split(",")))
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()
        node.kill_group()


def _client(drill_broker):
    from app.jobs.dispatch import celery_client

    return celery_client(drill_broker.url)


@contextmanager
def beat_ticks(drill_broker, task_name: str = ORPHAN_CHECK):
    """Send ``task_name`` on its beat schedule (celeryconfig) until the block ends, as beat
    would: the drills start no beat process of their own."""
    import celeryconfig

    (entry,) = [entry for entry in celeryconfig.beat_schedule.values()
                if entry["task"] == task_name]
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            _client(drill_broker).send_task(task_name, ignore_result=True,
                                            **entry.get("options", {}))
            stop.wait(entry["schedule"])

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join(timeout=10)


def _held_units(client, hostname: str, job_ids: set[str]) -> list[str]:
    active = client.control.inspect(destination=[hostname], timeout=1.0).active() or {}
    return [task["id"] for task in active.get(hostname, [])
            if task["name"] == "hub.io.run_job_unit" and str(task["args"][0]) in job_ids]


def _counts_body(truth, units=None) -> dict:
    params = {"window": full_window(truth)}
    if units:
        params["units"] = units
    return {"type": "administration_counts", "params": params}


def _expected_records(truth, units=None) -> int:
    if not units:
        return truth["administration"]["administrations_by_site"]["north-general"]
    wards = {unit.replace("-", "") for unit in units}
    return sum(row["count"] for row in truth["administration"]["by_site_ward_ndc11_date"]
               if row["ward"] in wards)


def _unit_statuses(hub_app, job_id: str) -> set[str]:
    session = hub_app.extensions["hub"].database.new_session()
    try:
        return set(session.scalars(select(JobUnit.status).where(
            JobUnit.job_id == uuid.UUID(job_id))).all())
    finally:
        session.close()


@pytest.mark.slow_fault
def test_a_sigkilled_worker_parents_units_run_again_within_about_a_minute(
        drill_api, drill_broker, nodes, tokens, truth, hub_app, demo_administration):
    doomed = nodes("doomed", queues="io")
    successor = nodes("successor")
    client = _client(drill_broker)
    demo_administration.admin.set_faults(latency_ms=1500)
    job_ids = [submit(drill_api, tokens, _counts_body(truth)).json["id"] for _ in range(2)]

    held: list[str] = []

    def doomed_is_busy():
        held[:] = _held_units(client, doomed.hostname, set(job_ids))
        return bool(held)

    wait_until(doomed_is_busy, timeout=60, interval=0.2, description="units on the doomed node")
    killed_at = time.monotonic()
    os.kill(doomed.process.pid, signal.SIGKILL)  # the parent only, as an OOM killer would
    doomed.process.wait(timeout=10)
    demo_administration.admin.clear_faults()
    with beat_ticks(drill_broker):
        jobs = [finished(drill_api, tokens, job_id, timeout=150) for job_id in job_ids]
    recovered = time.monotonic() - killed_at

    redispatched = successor.log_text().count("orphaned job task re-dispatched")
    print(f"\nparent SIGKILL -> {len(job_ids)} jobs succeeded in {recovered:.1f}s "
          f"(visibility timeout 1200 s; {len(held)} units held, {redispatched} re-dispatched)")
    assert [job["status"] for job in jobs] == ["succeeded"] * len(job_ids), jobs
    assert all(job["result"]["records"] == _expected_records(truth) for job in jobs)
    assert all(_unit_statuses(hub_app, job_id) == {"done"} for job_id in job_ids)
    assert recovered < 120
    # Not the broker's redelivery (20 minutes away): the orphan reconciler sent them again.
    assert redispatched >= len(held)


@pytest.mark.slow_fault
def test_the_database_down_mid_job_and_restored_every_job_ends_final_and_correct(
        drill_api, drill_broker, nodes, tokens, truth, hub_app, hub_settings,
        demo_administration):
    worker = nodes("outage")
    client = _client(drill_broker)
    units = [["ICU-1"], ["ICU-2"], ["ICU-1", "ICU-2"]]
    demo_administration.admin.set_faults(latency_ms=800)
    job_ids = [submit(drill_api, tokens, _counts_body(truth, chosen)).json["id"]
               for chosen in units]
    wait_until(lambda: _held_units(client, worker.hostname, set(job_ids)), timeout=60,
               interval=0.2, description="units running")

    with database_outage(hub_settings.database_url):
        outage_started = time.monotonic()
        wait_until(lambda: time.monotonic() - outage_started > DATABASE_OUTAGE_SECONDS,
                   timeout=DATABASE_OUTAGE_SECONDS + 15, interval=0.5,
                   description="the outage's length")
    restored_at = time.monotonic()
    demo_administration.admin.clear_faults()
    with beat_ticks(drill_broker):
        def all_final():
            return all(drill_api.get(f"/v1/jobs/{job_id}", headers=tokens.headers(
                "north-general-operator")).json["status"] in FINAL for job_id in job_ids)

        wait_until(all_final, timeout=150, interval=0.5, description="every job final")
    recovered = time.monotonic() - restored_at

    print(f"\ndatabase down {DATABASE_OUTAGE_SECONDS:.0f} s -> {len(job_ids)} jobs final "
          f"{recovered:.1f}s after it was back")
    jobs = [finished(drill_api, tokens, job_id) for job_id in job_ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * len(job_ids), jobs
    for job, chosen in zip(jobs, units, strict=True):
        assert job["result"]["records"] == _expected_records(truth, chosen)
    log = worker.log_text()
    assert "database-unavailable" in log  # the outage was met, and ridden through


def test_a_worker_given_sigterm_finishes_its_current_unit(
        drill_api, drill_broker, nodes, tokens, truth, hub_app, demo_administration):
    stopping = nodes("stopping", queues="io")
    nodes("planner", queues="compute,maintenance")  # plans and merges; units run on io nodes
    client = _client(drill_broker)
    demo_administration.admin.set_faults(latency_ms=1000)
    job_id = submit(drill_api, tokens, _counts_body(truth, ["ICU-1", "ICU-2", "MEDSURG-1"])
                    ).json["id"]
    held: list[str] = []
    wait_until(lambda: held.extend(_held_units(client, stopping.hostname, {job_id})) or held,
               timeout=60, interval=0.2, description="a unit on the stopping worker")

    stopping.process.send_signal(signal.SIGTERM)
    stopping.process.wait(timeout=40)  # worker_soft_shutdown_timeout (20 s) and the exit
    log = stopping.log_text()
    nodes("finisher", queues="io")
    job = finished(drill_api, tokens, job_id, timeout=90)

    # The unit it was running when told to stop was finished by it, not dropped.
    assert all(f"run_job_unit[{task_id}] succeeded" in log for task_id in held), log[-3000:]
    assert job["status"] == "succeeded", job
    assert job["result"]["records"] == _expected_records(truth, ["ICU-1", "ICU-2", "MEDSURG-1"])


@pytest.mark.slow_fault
def test_a_unit_outlasting_the_soft_shutdown_goes_back_on_the_queue(
        drill_api, drill_broker, nodes, tokens, truth, hub_app, demo_administration):
    # SIGTERM is Celery's warm shutdown: it waits for the running unit however long it takes.
    # A stop that cannot wait (SIGQUIT: what a supervisor's second signal asks) gives it
    # worker_soft_shutdown_timeout, then cancels it and puts its message back on the queue.
    stopping = nodes("impatient", queues="io", HUB_WORKER_SOFT_SHUTDOWN_TIMEOUT="2")
    nodes("planner", queues="compute,maintenance")
    client = _client(drill_broker)
    demo_administration.admin.set_faults(latency_ms=4000)
    job_id = submit(drill_api, tokens, _counts_body(truth, ["ICU-1"])).json["id"]
    held: list[str] = []
    wait_until(lambda: held.extend(_held_units(client, stopping.hostname, {job_id})) or held,
               timeout=60, interval=0.2, description="the unit on the stopping worker")

    stopped_at = time.monotonic()
    stopping.process.send_signal(signal.SIGTERM)
    stopping.process.send_signal(signal.SIGQUIT)
    stopping.process.wait(timeout=30)
    stopped_after = time.monotonic() - stopped_at
    demo_administration.admin.clear_faults()
    finisher = nodes("finisher", queues="io")
    job = finished(drill_api, tokens, job_id, timeout=90)

    print(f"\nSIGTERM + SIGQUIT, 2 s soft shutdown: worker gone after {stopped_after:.1f}s")
    assert stopped_after < 15
    assert f"run_job_unit[{held[0]}] succeeded" not in stopping.log_text()
    # Its message went back on the queue at once (not after the visibility timeout) and ran
    # on the next node.
    assert f"run_job_unit[{held[0]}] succeeded" in finisher.log_text()
    assert job["status"] == "succeeded", job
    assert job["result"]["records"] == _expected_records(truth, ["ICU-1"])
