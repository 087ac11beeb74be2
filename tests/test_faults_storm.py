"""A SIGKILL storm: over a hundred jobs run while the worker's pool children are SIGKILLed again
and again, then a worker parent is SIGKILLed and a replacement started; every job must end
succeeded with counts equal to the demo eMAR's seed-time ground truth (a unit run twice must
never count twice).

The drill has a stack of its own, so that the session's worker takes none of its tasks and a
killed process never touches the session: an embedded Redis (cache, results, beat's schedule,
and the broker unless the session's broker is RabbitMQ, which then gets a virtual host of the
drill's own), the API under gunicorn, beat (its reconcilers are part of the recovery) and
prefork workers; the database is the session's.
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import func, select

from app.canonical.times import to_utc
from tests.fixtures.fault_stacks import (
    alive,
    assert_completed_once,
    broker_is_rabbitmq,
    counts_body,
    job_outcomes,
    job_statuses,
    kill_orphans,
    north_general_units,
    rabbitmq_url,
    rabbitmq_vhost,
    start_beat,
    start_worker_node,
    wait_all_final,
)
from tests.fixtures.jobs import OPERATOR, idempotency_key
from tests.fixtures.processes import stop_process_group, wait_until
from tests.fixtures.services import running_gunicorn, start_embedded_redis

pytestmark = [pytest.mark.faults, pytest.mark.slow_fault]

STORM_JOBS = 100
UNITS_PER_JOB = 3
CONCURRENCY = 3
STORM_KILLS = 10
# Each eMAR page takes this long, so that a kill mostly lands in the middle of a unit.
EMAR_LATENCY_MS = 150
PARENT_KILL_JOBS = 20
# A job whose chord lost its merge to a kill (a child died while reporting its last unit) is
# merged by beat's reconcile_jobs: a minute idle, then its next run (every minute).
FINISH_BOUND_SECONDS = 150
# The Redis broker gives a dead parent's unacknowledged units back only after the visibility
# timeout (20 min); the orphan reconciler re-dispatches them within about a minute.
PARENT_KILL_BOUND_SECONDS = 180


@dataclass
class StormStack:
    api: str
    environment: dict[str, str]
    log_dir: object
    engine: object


@pytest.fixture(scope="module")
def storm_stack(hub_environment, hub_app, demo_tenants, tmp_path_factory):
    """The drill's Redis, broker, API and beat (workers are started by each test)."""
    log_dir = tmp_path_factory.mktemp("storm")
    redis_server = start_embedded_redis(log_dir / "redis")
    with ExitStack() as stack:
        stack.callback(redis_server.stop)
        broker_url = (stack.enter_context(rabbitmq_vhost(rabbitmq_url()))
                      if broker_is_rabbitmq() else redis_server.url)
        environment = {**hub_environment, "REDIS_URL": redis_server.url,
                       "CELERY_RESULT_BACKEND": redis_server.url,
                       "CELERY_BROKER_URL": broker_url}
        port = stack.enter_context(running_gunicorn(environment, log_dir / "api.log"))
        beat = start_beat(environment, log_dir=log_dir)
        stack.callback(stop_process_group, beat)
        yield StormStack(api=f"http://127.0.0.1:{port}", environment=environment,
                         log_dir=log_dir, engine=hub_app.extensions["hub"].database.engine)


@pytest.fixture
def emar_slowed(demo_administration, demo_faults_cleared):
    """The eMAR answering each page after EMAR_LATENCY_MS, for the test's duration."""
    demo_administration.admin.set_faults(latency_ms=EMAR_LATENCY_MS)
    yield
    demo_administration.admin.clear_faults()


def _submit_jobs(stack: StormStack, tokens, truth, count: int, name: str) -> dict[str, list]:
    units = north_general_units(truth)
    units_of = {}
    for number in range(count):
        chosen = [units[(number * UNITS_PER_JOB + k) % len(units)] for k in range(UNITS_PER_JOB)]
        response = requests.post(
            f"{stack.api}/v1/jobs", json=counts_body(truth, chosen), timeout=30,
            headers=tokens.headers(OPERATOR, **{
                "Idempotency-Key": idempotency_key(f"{name}-{number}")}))
        assert response.status_code == 202, response.text[:500]
        units_of[response.json()["id"]] = chosen
    return units_of


def _units_rerun(outcomes) -> int:
    return sum(attempts - 1 for outcome in outcomes.values()
               for attempts in outcome.unit_attempts.values())


def _running_units(engine, job_ids: list[str]) -> int:
    from sqlalchemy.orm import Session

    from app.jobs.models import JobUnit

    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(JobUnit).where(
            JobUnit.job_id.in_([uuid.UUID(job_id) for job_id in job_ids]),
            JobUnit.status == "running"))


def test_a_storm_of_pool_child_kills_loses_no_job_and_doubles_no_count(
        storm_stack, tokens, demo_administration, emar_slowed):
    truth = {"administration": demo_administration.admin.ground_truth("north-general")}
    worker = start_worker_node(storm_stack.environment, hostname=f"storm-{uuid.uuid4().hex[:6]}@"
                               "localhost", log_dir=storm_stack.log_dir, concurrency=CONCURRENCY)
    try:
        started = time.monotonic()
        units_of = _submit_jobs(storm_stack, tokens, truth, STORM_JOBS, "storm")
        job_ids = list(units_of)
        seed = random.randrange(1 << 30)
        chaos = random.Random(seed)
        kills = 0
        while kills < STORM_KILLS and set(job_statuses(storm_stack.engine, job_ids)) - {
                "succeeded", "failed", "cancelled"}:
            # The storm's randomness is the point: kills at unforeseen moments of a unit.
            time.sleep(chaos.uniform(0.5, 2.5))
            children = worker.pool_children()
            if len(children) < CONCURRENCY:
                continue  # the pool is still replacing the last one
            victim = chaos.choice(children)
            victim.send_signal(signal.SIGKILL)
            kills += 1
            wait_until(lambda victim=victim: not alive(victim.pid), timeout=10,
                       description="the killed pool child to be gone")
        last_kill = time.monotonic()
        wait_all_final(storm_stack.engine, job_ids, timeout=FINISH_BOUND_SECONDS,
                       what=f"all {STORM_JOBS} jobs to finish after the storm")
        finished = time.monotonic()

        outcomes = job_outcomes(storm_stack.engine, job_ids)
        assert_completed_once(outcomes, units_of, truth)
        assert kills >= 8, f"only {kills} kills before the jobs were done (seed {seed})"
        assert worker.process.poll() is None  # the parent lived through its children's deaths
        lost = worker.log_text().count("WorkerLostError")
        print(f"\nstorm (seed {seed}): {STORM_JOBS} jobs x {UNITS_PER_JOB} units, concurrency "
              f"{CONCURRENCY}; {kills} pool-child SIGKILLs ({lost} WorkerLostError lines); units "
              f"re-run {_units_rerun(outcomes)}; done {finished - last_kill:.1f} s after the last "
              f"kill, {finished - started:.1f} s in all")
    finally:
        worker.stop()


def test_a_killed_worker_parent_s_units_run_on_its_replacement(
        storm_stack, tokens, demo_administration, emar_slowed):
    truth = {"administration": demo_administration.admin.ground_truth("north-general")}
    run = uuid.uuid4().hex[:6]
    first = start_worker_node(storm_stack.environment, hostname=f"doomed-{run}@localhost",
                              log_dir=storm_stack.log_dir, concurrency=CONCURRENCY)
    replacement = None
    orphans = []
    try:
        units_of = _submit_jobs(storm_stack, tokens, truth, PARENT_KILL_JOBS, "parent-kill")
        job_ids = list(units_of)
        wait_until(lambda: _running_units(storm_stack.engine, job_ids) > 0, timeout=60,
                   interval=0.1, description="the doomed worker to run units")
        orphans = first.pool_children()
        first.process.send_signal(signal.SIGKILL)  # the parent alone, as an OOM kill would
        first.process.wait(timeout=10)
        killed_at = datetime.now(UTC)
        statuses_at_kill = dict(job_statuses(storm_stack.engine, job_ids))
        replacement = start_worker_node(
            storm_stack.environment, hostname=f"replacement-{run}@localhost",
            log_dir=storm_stack.log_dir, concurrency=CONCURRENCY)

        wait_all_final(storm_stack.engine, job_ids, timeout=PARENT_KILL_BOUND_SECONDS,
                       what=f"all {PARENT_KILL_JOBS} jobs to finish after the parent's SIGKILL")

        outcomes = job_outcomes(storm_stack.engine, job_ids)
        assert_completed_once(outcomes, units_of, truth)
        last = max((to_utc(outcome.finished_at) - killed_at).total_seconds()
                   for outcome in outcomes.values())
        print(f"\nparent kill: {PARENT_KILL_JOBS} jobs x {UNITS_PER_JOB} units; at the kill "
              f"{statuses_at_kill}; units re-run {_units_rerun(outcomes)}; last job done "
              f"{last:.1f} s after the SIGKILL")
    finally:
        if replacement is not None:
            replacement.stop()
        first.stop()
        kill_orphans(orphans)
