"""The Celery app of the workers, beat and Flower.

Tasks run under the hub's Flask app context (built once per worker process, after fork), so
they call the same services as the API with the same settings and database.
"""

from __future__ import annotations

import logging
import os

from celery import Celery, Task
from celery.signals import beat_init, setup_logging, task_postrun, worker_process_init
from flask import Flask

from app import create_app
from app.observability import task_context
from app.observability.logs import configure_logging

task_context.install()
logger = logging.getLogger(__name__)

_flask_app: Flask | None = None


def flask_app() -> Flask:
    """Return this process's Flask app, creating it on first use."""
    global _flask_app
    if _flask_app is None:
        _flask_app = create_app()
    return _flask_app


class HubTask(Task):
    """A task that runs inside the Flask app context."""

    abstract = True

    def __call__(self, *args, **kwargs):
        with flask_app().app_context():
            return self.run(*args, **kwargs)


celery_app = Celery("hub", task_cls=HubTask)
celery_app.config_from_object("celeryconfig")
celery_app.conf.imports = ("tasks.smoke", "tasks.audit", "tasks.jobs", "tasks.syncs",
                          "tasks.parallel_runs",
                          "tasks.events")


# Tasks that run once per event, delivery or sampled lookup: their outcome is recorded in the
# hub's own tables (delivery history, parallel-run counts), so Celery's line on each success
# would be one log line per HL7 message or webhook on a busy day.
PER_RECORD_TASKS = frozenset({"hub.io.fan_out_event", "hub.io.deliver_webhook",
                              "hub.io.compare_parallel_run"})


def routine_tasks() -> frozenset[str]:
    """The tasks beat sends on a schedule, and the per-record tasks: Celery's line on each
    success is not news (their failures and retries still are, and the hub logs or records
    what they did)."""
    from app.syncs.kinds import SYNC_KINDS

    return frozenset({entry["task"] for entry in celery_app.conf.beat_schedule.values()}
                     | {kind.task for kind in SYNC_KINDS.values()} | PER_RECORD_TASKS)


@setup_logging.connect
def _json_logging(loglevel=None, **_kwargs) -> None:
    # Connecting this signal stops Celery from installing its own plain-text log handlers.
    configure_logging(os.environ.get("HUB_LOG_LEVEL", "INFO"), routine_tasks=routine_tasks())


@worker_process_init.connect
def _reset_connections_after_fork(**_kwargs) -> None:
    # A forked pool process must not reuse the parent's pooled database connections.
    if _flask_app is not None:
        _flask_app.extensions["hub"].database.dispose_after_fork()


@task_postrun.connect
def _remove_session(**_kwargs) -> None:
    if _flask_app is not None:
        _flask_app.extensions["hub"].database.remove_session()


@beat_init.connect
def _apply_sync_schedules(**_kwargs) -> None:
    # Beat starts with every tenant's syncs in its schedule, not a minute later when the
    # periodic apply first runs. A failure here must not stop beat: that periodic apply
    # (hub.maintenance.apply_sync_schedules) tries again.
    from app.syncs.service import apply_schedules

    try:
        with flask_app().app_context():
            hub = flask_app().extensions["hub"]
            changes = apply_schedules(db_session=hub.database.session, settings=hub.settings)
        logger.info("sync schedules applied", extra={"changes": changes})
    except Exception:  # noqa: BLE001
        logger.exception("sync schedules could not be applied at beat start")
