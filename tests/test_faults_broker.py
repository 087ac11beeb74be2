"""Broker failure at submit, end to end with real processes: the API under gunicorn and a
worker on a broker of the drill's own (an embedded Redis), which is stopped for real and later
started again on the same port. A job posted meanwhile is accepted into the outbox (202) or
refused with 503 and Retry-After (nothing stored), never 500; once the broker is back, the
outbox dispatcher (`hub jobs dispatch-pending`, run as operators run it) sends it, the worker
(which reconnected on its own) runs it, and the count equals the demo eMAR's ground truth.

tests/test_jobs_outbox.py covers the outbox's rules in-process (backoff, revival by re-post,
replays, PHI); this drill checks that the running processes ride through a real broker stop.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
import redis
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.jobs.models import Job, OutboxMessage
from app.settings import PROJECT_ROOT
from devstack.embedded_redis import start_redis_server
from tests.fixtures.fault_stacks import (
    counts_body,
    counts_in,
    expected_counts,
    start_worker_node,
)
from tests.fixtures.jobs import OPERATOR, idempotency_key
from tests.fixtures.processes import wait_until
from tests.fixtures.services import running_gunicorn, start_embedded_redis

pytestmark = pytest.mark.faults

UNITS = ["ICU-1", "ED-1"]
# A submission must answer at once while the broker is down, not hang on it.
ANSWER_BOUND_SECONDS = 10


@pytest.fixture
def broker_drill(hub_environment, demo_tenants, demo_faults_cleared, tmp_path):
    """The drill's broker (an embedded Redis), a worker and the API on it; the database,
    cache and results are the session's."""
    broker_dir = tmp_path / "broker"
    broker = start_embedded_redis(broker_dir)
    environment = {**hub_environment, "CELERY_BROKER_URL": broker.url}
    worker = start_worker_node(environment, hostname=f"broker-drill-{uuid.uuid4().hex[:6]}@"
                               "localhost", log_dir=tmp_path, concurrency=1)
    drill = {"broker": broker, "broker_dir": broker_dir, "environment": environment,
             "worker": worker}
    try:
        with running_gunicorn(environment, tmp_path / "api.log") as port:
            drill["api"] = f"http://127.0.0.1:{port}"
            yield drill
    finally:
        worker.stop()
        drill["broker"].stop()


def _restart_broker(drill) -> None:
    """Start the broker again: same port, same password, empty (as after a crash)."""
    stopped = drill["broker"]
    stopped.process = start_redis_server(port=stopped.port, data_dir=drill["broker_dir"],
                                         password=stopped.password, persist=False)
    wait_until(lambda: redis.Redis.from_url(stopped.url, socket_connect_timeout=0.5).ping(),
               timeout=15, description="the broker back")


def _dispatch_pending(environment) -> str:
    """One pass of the outbox dispatcher, as an operator runs it (its own process)."""
    completed = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "hub", "jobs", "dispatch-pending"],
        cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def _outbox_sent(engine, job_id: str) -> bool:
    with Session(engine) as session:
        rows = list(session.scalars(select(OutboxMessage).where(
            OutboxMessage.job_id == uuid.UUID(job_id))))
    return bool(rows) and all(row.sent_at is not None for row in rows)


def test_a_job_posted_while_the_broker_is_stopped_runs_once_the_broker_is_back(
        broker_drill, hub_app, tokens, demo_administration):
    truth = {"administration": demo_administration.admin.ground_truth("north-general")}
    engine = hub_app.extensions["hub"].database.engine
    api, key = broker_drill["api"], idempotency_key("broker-stopped")
    headers = tokens.headers(OPERATOR, **{"Idempotency-Key": key})

    broker_drill["broker"].stop()
    stopped_at = time.monotonic()
    response = requests.post(f"{api}/v1/jobs", json=counts_body(truth, UNITS), headers=headers,
                             timeout=60)
    answered_in = time.monotonic() - stopped_at

    assert answered_in < ANSWER_BOUND_SECONDS
    assert response.status_code in (202, 503), response.text[:500]
    if response.status_code == 503:
        # Refused: nothing stored, and the client is told when to try again.
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert int(response.headers["Retry-After"]) >= 1
        with Session(engine) as session:
            assert session.scalar(select(Job).where(Job.idempotency_key == key)) is None
        job_id = None
    else:
        job_id = response.json()["id"]
        assert response.json()["status"] == "queued"
        assert not _outbox_sent(engine, job_id)
        # The API keeps answering what needs no broker.
        shown = requests.get(f"{api}/v1/jobs/{job_id}", headers=tokens.headers(OPERATOR),
                             timeout=10)
        assert shown.status_code == 200 and shown.json()["status"] == "queued"

    # The broker stays down until the worker has lost it and failed to reconnect (it keeps
    # running and trying).
    wait_until(lambda: broker_drill["worker"].log_text().count("Cannot connect to redis") >= 2,
               timeout=30, interval=0.2, description="the worker to fail to reconnect")
    _restart_broker(broker_drill)
    back_at = time.monotonic()
    if job_id is None:  # the client retries its refused submission with the same key
        again = requests.post(f"{api}/v1/jobs", json=counts_body(truth, UNITS),
                              headers=headers, timeout=60)
        assert again.status_code == 202, again.text[:500]
        job_id = again.json()["id"]
    passes = []

    def dispatched() -> bool:
        passes.append(_dispatch_pending(broker_drill["environment"]))
        return _outbox_sent(engine, job_id)

    wait_until(dispatched, timeout=60, interval=0.5,
               description="the outbox dispatcher to send the job")
    job = {}

    def finished() -> bool:
        job.update(requests.get(f"{api}/v1/jobs/{job_id}", headers=tokens.headers(OPERATOR),
                                timeout=10).json())
        return job["status"] in ("succeeded", "failed", "cancelled")

    wait_until(finished, timeout=90, interval=0.2, description="the job to finish")
    done_at = time.monotonic()

    assert job["status"] == "succeeded", job
    expected = expected_counts(truth, UNITS)
    assert job["result"]["records"] == sum(expected.values())
    assert counts_in(job["result"]) == expected
    assert broker_drill["worker"].process.poll() is None  # the worker rode through the outage
    print(f"\nbroker stopped at submit: answered {response.status_code} in {answered_in:.2f} s; "
          f"broker back after {back_at - stopped_at:.1f} s; {len(passes)} dispatcher pass(es); "
          f"job done {done_at - back_at:.1f} s after the broker came back "
          f"({done_at - stopped_at:.1f} s after it stopped)")
