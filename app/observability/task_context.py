"""Carry the request id and the tenant from whoever submits work into every Celery task it
leads to.

The submitting side stamps ``hub_request_id`` and ``hub_tenant`` (the tenant's slug) into the
message headers; a running task sets them (and its own task id) into the logging context, and
any task it publishes in turn (a job's units, a chord body, a retry) is stamped again, so every
log line of a job names its tenant. Headers carry ids only, never PHI.
"""

from __future__ import annotations

from celery.signals import before_task_publish, task_postrun, task_prerun

from app.observability.context import request_id_var, task_id_var, tenant_var

REQUEST_ID_HEADER = "hub_request_id"
TENANT_HEADER = "hub_tenant"
_tokens: dict[str, tuple] = {}


@before_task_publish.connect
def _stamp_context(headers=None, **_kwargs) -> None:
    if headers is None:
        return
    for header, var in ((REQUEST_ID_HEADER, request_id_var), (TENANT_HEADER, tenant_var)):
        value = var.get()
        if value and header not in headers:
            headers[header] = value


@task_prerun.connect
def _enter_task(task_id=None, task=None, **_kwargs) -> None:
    request_id = getattr(task.request, REQUEST_ID_HEADER, None) if task else None
    tenant = getattr(task.request, TENANT_HEADER, None) if task else None
    _tokens[task_id] = (request_id_var.set(request_id), task_id_var.set(task_id),
                        tenant_var.set(tenant))


@task_postrun.connect
def _leave_task(task_id=None, **_kwargs) -> None:
    tokens = _tokens.pop(task_id, None)
    if tokens:
        for var, token in zip((request_id_var, task_id_var, tenant_var), tokens, strict=True):
            var.reset(token)


def install() -> None:
    """Importing this module connects the signal handlers; this names that intent."""
