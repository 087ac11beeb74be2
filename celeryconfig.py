"""Celery configuration of every hub process (workers, beat, Flower, and the API when it submits).

Read ../docs/celery.md before changing a value here: several settings exist only to avoid a
known Celery or Redis trap, and the comment on each says which.
"""

from kombu import Exchange, Queue

from app.settings import load_settings

_settings = load_settings()

broker_url = _settings.celery_broker_url
result_backend = _settings.celery_result_backend
# Retry the broker at start-up instead of exiting: the stack starts Redis, the API and the
# workers at the same moment.
broker_connection_retry_on_startup = True
# A worker that loses the broker (a Redis restart, a failover) reconnects with backoff (Celery's
# 2 s steps up to 30 s) for as long as it takes, instead of exiting after the default 100
# attempts: a stopped worker needs someone to restart it, a waiting one resumes on its own.
broker_connection_retry = True
broker_connection_max_retries = None
# A task that finishes while the result backend is down retries storing its result (jittered
# backoff up to 10 s, ~5 minutes in all) instead of failing on the first ConnectionError: its
# outcome is then stored once Redis is back, and a chord counts it.
result_backend_always_retry = True
result_backend_max_retries = 60

# JSON only: pickle would let a crafted message run code, and JSON keeps what Flower shows
# readable and reviewable for PHI.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
# Do not store task args/kwargs/name with the result: the result backend is not a place for
# anything but ids and de-identified figures.
result_extended = False

# Queues by kind of work, so a slow downstream never starves merging or maintenance:
#   io          — calls to hospital systems (mostly waiting on the network)
#   compute     — CPU-bound merging and storing of results
#   maintenance — purges, reconcilers and other housekeeping
_exchange = Exchange("hub", type="direct")
task_queues = (
    Queue("io", _exchange, routing_key="io"),
    Queue("compute", _exchange, routing_key="compute"),
    Queue("maintenance", _exchange, routing_key="maintenance"),
)
task_default_queue = "compute"
task_default_exchange = "hub"
task_default_routing_key = "compute"
# Task names say where they run: hub.io.*, hub.compute.*, hub.maintenance.*.
task_routes = {
    "hub.io.*": {"queue": "io", "routing_key": "io"},
    "hub.compute.*": {"queue": "compute", "routing_key": "compute"},
    "hub.maintenance.*": {"queue": "maintenance", "routing_key": "maintenance"},
}

# Acknowledge after the task finishes, so a killed worker's task is delivered again. Every hub
# task is written to be idempotent (it upserts its outcome by job and unit id), which this needs.
task_acks_late = True
# Without this, a task whose worker process died (SIGKILL, OOM) is acknowledged and lost.
task_reject_on_worker_lost = True
# Reserve one message per process: long tasks must not sit behind another in a busy process
# while an idle worker could run them, and a crash redelivers at most one reserved message.
worker_prefetch_multiplier = 1
# A broker connection loss makes late-acked tasks run twice; cancel them instead (they are
# redelivered once the connection is back).
worker_cancel_long_running_tasks_on_connection_loss = True

task_time_limit = _settings.hub_task_time_limit
# The soft limit raises inside the task first, so it can record a clean failure.
task_soft_time_limit = max(1, _settings.hub_task_time_limit - 30)
# Redis redelivers unacknowledged messages after the visibility timeout: it must exceed the
# longest task, and the result backend uses the same value (Celery issue #5935).
# A consumer looks for such messages every unacked_restore_interval (10 s) × throttle calls:
# throttle 1 keeps that sweep at ~10 s instead of ~100 s, so a killed worker's tasks come back
# soon after their visibility timeout (the sweep is one small Redis query).
broker_transport_options = {"visibility_timeout": _settings.hub_visibility_timeout,
                            "unacked_restore_throttle": 1}
result_backend_transport_options = {"visibility_timeout": _settings.hub_visibility_timeout}
# Chord counters live in the result backend: they must outlive the longest job. Never 0.
result_expires = _settings.hub_result_expires
# Give a task that is still running at shutdown time to finish before a warm shutdown becomes
# cold (and the message is requeued).
worker_soft_shutdown_timeout = _settings.hub_worker_soft_shutdown_timeout
worker_enable_soft_shutdown_on_idle = True

# Recycle worker processes: long-lived processes that page through large downstream data
# fragment memory.
worker_max_tasks_per_child = 500
worker_max_memory_per_child = 512_000  # KiB

# Events for Flower (which shows ids only: task arguments are ids by design).
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True

timezone = "UTC"
enable_utc = True

# Beat keeps its schedule in Redis (celery-redbeat) instead of a local file: entries keep their
# last run across restarts (a restarted beat neither loses nor repeats a due run), syncs are
# added and changed at run time by the hub (app/syncs/beat.py) without a deploy, and a lock
# lets only one beat send tasks even when two are started by mistake: the second waits.
# tasks.beat.HubBeatScheduler is redbeat's scheduler made to ride through a Redis or broker
# outage (one warning, retries with backoff, resumes on its own) and to re-check its lock on
# every tick, so two beats never send at once; see that module for why a subclass.
beat_scheduler = "tasks.beat:HubBeatScheduler"
redbeat_redis_url = _settings.redis_url
redbeat_key_prefix = "hub:beat:"
# No redbeat ``retry_period``: its retries cover only some calls and end beat after the period;
# the scheduler handles outages itself at the tick. The timeouts turn an unreachable Redis
# into an error (and a retry) instead of a hang.
redbeat_redis_options = {"socket_connect_timeout": 2, "socket_timeout": 5}
# Beat looks at its schedule at least this often: how soon a changed schedule takes effect,
# and how often the lock is extended (it must stay well under the lock timeout).
beat_max_loop_interval = _settings.hub_beat_max_loop_interval
# A beat that died without releasing its lock (SIGKILL, a lost host) blocks a standby for at
# most this long; a standby looks every second, so it takes over within about this time (the
# redbeat default, 5 × Celery's loop interval of 300 s, would be 25 minutes). A warm stop
# releases the lock at once.
redbeat_lock_timeout = _settings.hub_beat_lock_timeout

# The hub's own plumbing. Syncs (per tenant, and the hub-wide retention purge) are not listed
# here: they live in the sync_schedules table and app/syncs/beat.py writes their entries.
beat_schedule = {
    # Moves queued audit events into the audit table. expires: a tick no worker took within its
    # own interval is dropped, so a backlog after an outage is one drain, not hundreds queued up.
    "write-audit-events": {
        "task": "hub.maintenance.write_audit_events",
        "schedule": 5.0,
        "options": {"expires": 5},
    },
    # Merges jobs whose units all finished but whose chord body never ran (lost chord counter).
    "reconcile-jobs": {
        "task": "hub.maintenance.reconcile_jobs",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # Re-sends job units (and plans) that no live worker holds: a SIGKILLed worker's units
    # run again within about a minute instead of after the Redis visibility timeout, and a
    # unit lost in a database outage runs once the database is back. Two looks confirm an
    # orphan, so the interval sets the reaction time (grace + about two intervals).
    "redispatch-orphaned-units": {
        "task": "hub.maintenance.redispatch_orphaned_units",
        "schedule": 15.0,
        "options": {"expires": 15},
    },
    # Gives new tenants their syncs and mirrors schedule changes made in the database.
    "apply-sync-schedules": {
        "task": "hub.maintenance.apply_sync_schedules",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # The jobs' outbox: plan and replayed-unit tasks committed with their job whose send failed
    # (broker down at submit time), re-sent with backoff until the broker takes them.
    "dispatch-job-outbox": {
        "task": "hub.maintenance.dispatch_job_outbox",
        "schedule": 5.0,
        "options": {"expires": 5},
    },
    # The events outbox: fan-outs and webhook deliveries that were stored but whose task never
    # reached the broker (it was down), and deliveries whose worker died mid-attempt.
    "sweep-events": {
        "task": "hub.maintenance.sweep_events",
        "schedule": 15.0,
        "options": {"expires": 15},
    },
}
