"""``GET /v1/audit-events``: the caller's tenant's audit trail, for admins."""

from __future__ import annotations

from app.api import HubBlueprint
from app.audit import service
from app.audit.schemas import AuditEventPageSchema, AuditEventQuerySchema
from app.auth.principal import current_principal, requires_scopes
from app.extensions import resources

blp = HubBlueprint("audit", __name__, url_prefix="/v1", audit_resource_type="audit_events",
                   description="The append-only audit trail of the tenant's requests.")

_PAGE_EXAMPLE = {
    "items": [{
        "event_id": "9b2f6a0e-3c1d-4f5e-8a7b-6c5d4e3f2a1b",
        "occurred_at": "2026-11-24T09:41:07.123456+00:00",
        "request_id": "4f1c2b7e9a0d4e5f8a6b3c2d1e0f9a8b",
        "tenant_id": "0c4a1f9e-7d2b-4e8a-9f3c-5b6d7e8f9a0b",
        "client_id": "north-general-emar",
        "operation": "lookups.list_administrations",
        "resource_type": "administrations",
        "target_system": "administration",
        "outcome": "success",
        "status_code": 200,
        "latency_ms": 14,
    }],
    "next_cursor": "eyJiZWZvcmUiOjEyMzR9.q3Jd0n1wH6c4mB2x9yZ8aT5uK7vL0pQ1rS2tU3vW4xY",
}


@blp.get("/audit-events")
@requires_scopes("audit:read")
@blp.arguments(AuditEventQuerySchema, location="query")
@blp.response(200, AuditEventPageSchema, example=_PAGE_EXAMPLE,
              description="A page of events, newest first.")
def list_audit_events(query: dict):
    """The tenant's audit events, newest first.

    Every `/v1` request is an event: who called (client), what (operation, resource type, target
    system), how it ended (outcome, status, latency) and its request id. Events include requests
    up to this one. Filter by time window and fields; follow `next_cursor` for older pages.
    """
    hub = resources()
    return service.list_events(redis_client=hub.redis, db_session=hub.database.session,
                               tenant_id=current_principal().tenant_id,
                               cursor_key=hub.settings.hub_secret_key, **query)
