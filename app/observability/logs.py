"""JSON-line logging for every hub process, stamped with request id, tenant and task id."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from app.observability.context import request_id_var, task_id_var, tenant_var
from app.phi.redaction import PhiScrubFilter

_CONFIGURED = False


class ContextFilter(logging.Filter):
    """Copy the current request id, tenant and task id onto every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(record, "request_id", None) or request_id_var.get()
        record.tenant = getattr(record, "tenant", None) or tenant_var.get()
        record.task_id = getattr(record, "task_id", None) or task_id_var.get()
        return True


# Celery's bookkeeping lines about routine work: beat announcing each task it sends, a worker
# noting each message it received, and the success of a task that runs on a schedule. Flower
# shows all of them, and the hub logs what such a task did when it did something; in the log
# they buried everything else (an idle stack wrote ~55 lines a minute, nearly all of them
# these). They are written as DEBUG lines instead, so HUB_LOG_LEVEL=DEBUG still shows them.
# Failures and retries keep their level.
_BEAT_SENDING = "Scheduler: Sending due task"


class RoutineCeleryFilter(logging.Filter):
    """Demote Celery's lines about routine tasks to DEBUG (and drop them below DEBUG)."""

    def __init__(self, routine_tasks: frozenset[str] = frozenset()):
        super().__init__()
        self.routine_tasks = routine_tasks

    def _routine(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return False
        if record.name == "celery.beat":
            return str(record.msg).startswith(_BEAT_SENDING)
        if record.name == "celery.worker.strategy":  # "Task … received", for every task
            return True
        if record.name == "celery.app.trace":
            task = (getattr(record, "data", None) or {}).get("name")
            return task in self.routine_tasks and "succeeded" in str(record.msg)
        return False

    def filter(self, record: logging.LogRecord) -> bool:
        # The mark keeps the verdict when the (already demoted) record reaches another handler.
        if not (getattr(record, "routine", False) or self._routine(record)):
            return True
        record.routine = True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def json_handler(stream=None, *, routine_tasks: frozenset[str] = frozenset()
                 ) -> logging.Handler:
    """Return a handler writing one JSON object per line; Celery's lines about
    ``routine_tasks`` (and every beat send and worker receipt) are DEBUG lines."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(
        "%(levelname)s %(name)s %(message)s %(request_id)s %(tenant)s %(task_id)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    ))
    handler.addFilter(RoutineCeleryFilter(routine_tasks))
    handler.addFilter(ContextFilter())
    handler.addFilter(PhiScrubFilter())
    return handler


def configure_logging(level: str = "INFO", *, force: bool = False,
                      routine_tasks: frozenset[str] = frozenset()) -> None:
    """Send the root logger's output through the JSON handler (once per process)."""
    global _CONFIGURED
    if _CONFIGURED and not force:
        return
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(json_handler(routine_tasks=routine_tasks))
    root.setLevel(level.upper())
    # Alembic announces each of its plugins at INFO on every migration run.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    _CONFIGURED = True
