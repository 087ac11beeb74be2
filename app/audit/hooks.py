"""Flask hooks that audit every ``/v1`` request, whatever its answer (401s, 429s and 500s too).

The resource type is declared once per blueprint (``HubBlueprint(audit_resource_type=...)``), or
per view where a blueprint serves several (``@blp.audits(...)``), and read from the matched
endpoint, so a request refused before its view runs (403, 422, 429) names it too. Views that
called a system set ``g.audit_target_system``; everything else comes from the principal, the
matched endpoint and the response status.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, current_app, g, request

from app.audit.records import AuditRecord, outcome_for
from app.audit.service import record_event
from app.database import utcnow

AUDITED_PREFIX = "/v1"
# Operation of a /v1 request that matched no route (404, 405).
UNMATCHED_OPERATION = "unmatched"

logger = logging.getLogger(__name__)


def _audited() -> bool:
    return request.path == AUDITED_PREFIX or request.path.startswith(AUDITED_PREFIX + "/")


def _resource_type() -> str | None:
    """The resource type the matched view (or else its blueprint) declares; a view may still
    set ``g.audit_resource_type`` when it knows better."""
    if g.get("audit_resource_type"):
        return g.audit_resource_type
    if not request.endpoint:
        return None
    declared = getattr(current_app.view_functions.get(request.endpoint), "audit_resource_type",
                       None)
    if declared is None and request.blueprint:
        declared = getattr(current_app.blueprints.get(request.blueprint), "audit_resource_type",
                           None)
    return declared


def _record_for(response: Response) -> AuditRecord:
    principal = g.get("principal")
    started = g.get("audit_started")
    return AuditRecord(
        occurred_at=g.get("audit_started_at") or utcnow(),
        request_id=g.get("request_id") or "-",
        tenant_id=principal.tenant_id if principal else None,
        client_id=principal.client_id if principal else None,
        operation=request.endpoint or UNMATCHED_OPERATION,
        resource_type=_resource_type(),
        target_system=g.get("audit_target_system"),
        outcome=outcome_for(response.status_code),
        status_code=response.status_code,
        latency_ms=round((time.perf_counter() - started) * 1000) if started else None,
    )


def init_audit(app: Flask) -> None:
    """Audit every ``/v1`` request after its response is made.

    Call before the bearer check and rate limits are installed: their ``before_request`` hooks
    can answer early, and the start time must be taken before them.
    """

    @app.before_request
    def _start_audit() -> None:
        if _audited():
            g.audit_started_at = utcnow()
            g.audit_started = time.perf_counter()

    @app.after_request
    def _audit(response: Response) -> Response:
        if not _audited():
            return response
        record = None
        try:
            record = _record_for(response)
            hub = current_app.extensions["hub"]
            record_event(record=record, redis_client=hub.redis, database=hub.database)
        except Exception as error:
            # Neither Redis nor the database took the event. The answer is already made, so it
            # is sent; the event's fields (PHI-free by construction) go to the log instead.
            logger.error("audit event not stored", extra={
                "error": type(error).__name__,
                "audit_event": record.to_dict() if record else {"operation": request.endpoint}})
        return response
