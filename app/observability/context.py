"""The ids that follow one piece of work through API, downstream calls, logs and tasks."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from app.phi.redaction import looks_like_identifier

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
tenant_var: ContextVar[str | None] = ContextVar("tenant", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)

# Accept a caller's X-Request-ID only when it is a plain token: it is echoed into logs and
# headers, so free text (which could carry PHI or inject log lines) is replaced.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def enter_tenant(tenant: str | None) -> None:
    """Name ``tenant`` (its slug) on the log lines of the rest of the running task and on the
    tasks it sends, for work that learns its tenant only once it runs (a sync). The task's
    context is reset when the task ends (task_context)."""
    tenant_var.set(tenant)


def new_request_id() -> str:
    """Return a fresh request id."""
    return uuid.uuid4().hex


def accept_request_id(candidate: str | None) -> str:
    """Return ``candidate`` when it is a well-formed request id, otherwise a fresh one.

    An id shaped like a patient identifier (an MRN, say) is replaced too: request ids are
    stored in audit rows and logs as they are.
    """
    if candidate and _REQUEST_ID.match(candidate) and not looks_like_identifier(candidate):
        return candidate
    return new_request_id()
