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


def json_handler(stream=None) -> logging.Handler:
    """Return a handler writing one JSON object per line."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(
        "%(levelname)s %(name)s %(message)s %(request_id)s %(tenant)s %(task_id)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    ))
    handler.addFilter(ContextFilter())
    handler.addFilter(PhiScrubFilter())
    return handler


def configure_logging(level: str = "INFO", *, force: bool = False) -> None:
    """Send the root logger's output through the JSON handler (once per process)."""
    global _CONFIGURED
    if _CONFIGURED and not force:
        return
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(json_handler())
    root.setLevel(level.upper())
    # Alembic announces each of its plugins at INFO on every migration run.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    _CONFIGURED = True
