"""The one place the hub submits work to Celery (the API, beat's syncs, the CLI).

Work is sent by task name through a client-only Celery app configured from ``celeryconfig``:
the API never imports task code, so it stays light and cannot run a task in its own process.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache

from celery import Celery, chain, chord, signature
from celery.exceptions import CeleryError
from celery.result import AsyncResult
from kombu.exceptions import ChannelError, KombuError
from redis.exceptions import RedisError

from app.observability import task_context
from app.phi.boundary import assert_task_arguments

task_context.install()


# What sending to the broker raises when it is down (an outbox then keeps the work).
BROKER_ERRORS = (CeleryError, KombuError, RedisError, OSError)

# The tasks the jobs' outbox sends (``app.jobs.service``): plan a new job, or run a replayed
# unit and merge its job after.
PLAN_JOB = "hub.compute.plan_job"
RUN_JOB_UNIT = "hub.io.run_job_unit"


@lru_cache(maxsize=4)
def celery_client(broker_url: str | None = None) -> Celery:
    """Return the client-only Celery app (created on first use): on ``celeryconfig``'s broker,
    or on ``broker_url`` (the broker of the settings a caller was given)."""
    client = Celery("hub", set_as_current=False)
    client.config_from_object("celeryconfig")
    if broker_url is not None:
        # Celery lets a CELERY_BROKER_URL in the environment win over ``broker_url``; the
        # write URL (what sending uses) is taken from configuration first.
        client.conf.broker_url = client.conf.broker_write_url = broker_url
    return client


def submit_smoke_chain(value: int) -> AsyncResult:
    """Run an echo on the io queue chained into a doubling on the compute queue."""
    client = celery_client()
    return chain(
        signature("hub.io.smoke_echo", args=(value,), app=client),
        signature("hub.compute.smoke_double", app=client),
    ).apply_async()


def submit_smoke_chord(size: int) -> AsyncResult:
    """Fan ``size`` squaring tasks out on the io queue and total them on the compute queue."""
    client = celery_client()
    header = [signature("hub.io.smoke_square", args=(number,), app=client)
              for number in range(size)]
    return chord(header, app=client)(signature("hub.compute.smoke_total", app=client))


def _send(task_name: str, args: tuple, countdown: float | None = None, *,
          ignore_result: bool = False) -> AsyncResult:
    # Flower and the broker show task arguments: ids only, checked at the PHI boundary.
    assert_task_arguments(args)
    # ignore_result: nobody waits on the task, so sending needs the broker alone, not the
    # result backend (whose client, when Redis is down, retries for ~20 s and then raises).
    return celery_client().send_task(task_name, args=args, countdown=countdown,
                                     ignore_result=ignore_result)


def submit_job_pipeline(*, job_id: str, broker_url: str | None = None) -> None:
    """Start a job: its planning task fans the units out as a chord and merges after."""
    assert_task_arguments((job_id,))
    # No result wanted (nobody waits on a plan): sending then needs the broker alone, not the
    # result backend (whose client, when Redis is down, retries for ~20 s and then raises).
    celery_client(broker_url).send_task(PLAN_JOB, args=(job_id,), ignore_result=True)


def revoke_unit_tasks(task_ids: list[str]) -> None:
    """Revoke a cancelled job's unit tasks that have not started (running ones see the
    cancellation in the database and stop there)."""
    if task_ids:
        celery_client().control.revoke(task_ids)


def replay_unit(*, job_id: str, unit: str, broker_url: str | None = None) -> None:
    """Run a dead-lettered unit again, then merge the job if it was the last one missing."""
    assert_task_arguments((job_id, unit))
    client = celery_client(broker_url)
    merge = signature("hub.compute.merge_job_results", args=(job_id,), immutable=True,
                      app=client)
    # The merge follows the unit as its link; no result wanted (see submit_job_pipeline).
    signature(RUN_JOB_UNIT, args=(job_id, unit), immutable=True, app=client).apply_async(
        link=merge, ignore_result=True)


def run_sync_now(*, task_name: str, schedule_id: str) -> str:
    """Send a sync's task at once (an operator's "run now"); its single-flight lock still
    holds, so a run already going makes this one a counted skip. Returns the task id."""
    return _send(task_name, (schedule_id,)).id


def compare_parallel_run(*, comparison_id: str) -> None:
    """Compare a sampled lookup's answer with its legacy endpoint's, on the io queue (the id
    names the hub's answer kept in Redis: the answer itself never travels in the message)."""
    _send("hub.io.compare_parallel_run", (comparison_id,), ignore_result=True)


def fan_out_event(*, event_id: str) -> None:
    """Make a published event's webhook deliveries and send them (after the publisher's
    commit; the event sweeper re-sends what never reached the broker)."""
    _send("hub.io.fan_out_event", (event_id,), ignore_result=True)


def deliver_webhook(*, delivery_id: str, countdown: float | None = None) -> None:
    """Attempt one webhook delivery, now or after ``countdown`` seconds (a retry's backoff)."""
    _send("hub.io.deliver_webhook", (delivery_id,), countdown, ignore_result=True)


@dataclass(frozen=True)
class WorkerHoldings:
    """What the live workers hold right now: the (task name, args) of every task running,
    reserved (prefetched) or scheduled (a retry's countdown), and which workers answered."""

    workers: frozenset[str]
    tasks: frozenset[tuple[str, tuple]]

    def holds(self, task_name: str, args: tuple) -> bool:
        return (task_name, tuple(args)) in self.tasks


def _task_args(entry: dict) -> tuple:
    args = entry.get("args") or ()
    if isinstance(args, str):
        # An older worker answers with the arguments' repr: ids only, so a literal.
        try:
            args = ast.literal_eval(args)
        except (ValueError, SyntaxError):
            return ()
    return tuple(args) if isinstance(args, list | tuple) else ()


def worker_holdings(*, timeout: float = 2.0, broker_url: str | None = None
                    ) -> WorkerHoldings | None:
    """Ask every live worker which tasks it holds (``inspect`` active, reserved, scheduled:
    on Redis and RabbitMQ alike). None when no worker answered at all: then nothing can be
    concluded about any task. A worker restarted under the same name answers for itself, so
    a task its previous process held counts as held by nobody."""
    inspect = celery_client(broker_url).control.inspect(timeout=timeout)
    active = inspect.active()
    if not active:
        return None
    workers = frozenset(active)
    # The workers that answered once are asked again by name: the reply returns as soon as
    # all of them have answered, instead of after the whole timeout.
    asked = celery_client(broker_url).control.inspect(destination=sorted(workers),
                                                     timeout=timeout, limit=len(workers))
    reserved = asked.reserved() or {}
    scheduled = asked.scheduled() or {}
    tasks: set[tuple[str, tuple]] = set()
    for replies in (active, reserved):
        for entries in replies.values():
            tasks.update((entry.get("name"), _task_args(entry)) for entry in entries or ())
    for entries in scheduled.values():
        for entry in entries or ():
            request = entry.get("request") or {}
            tasks.add((request.get("name"), _task_args(request)))
    if set(reserved) != workers or set(scheduled) != workers:
        # A worker that answered the first question but not the next may hold anything.
        return None
    return WorkerHoldings(workers=workers, tasks=frozenset(tasks))


def idle_queues(names: tuple[str, ...], *, broker_url: str | None = None) -> frozenset[str]:
    """Return which of the queues ``names`` hold no message waiting for a worker (a passive
    declare, which Redis and RabbitMQ both answer with the message count)."""
    idle = set()
    with celery_client(broker_url).connection_for_write() as connection:
        for name in names:
            # A channel per question: RabbitMQ closes the channel a NOT_FOUND was raised on.
            with connection.channel() as channel:
                try:
                    waiting = channel.queue_declare(queue=name, passive=True).message_count
                except ChannelError:
                    waiting = 0  # Redis drops an empty queue's key: nothing waits in it
            if waiting == 0:
                idle.add(name)
    return frozenset(idle)
