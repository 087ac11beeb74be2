"""``/v1/subscriptions``: a tenant's webhook subscriptions, their delivery history and dead
letters. See docs/events.md."""

from __future__ import annotations

from app.api import HubBlueprint
from app.auth.principal import current_principal, requires_scopes
from app.canonical.parameters import NoParametersSchema
from app.events import subscriptions as service
from app.events.schemas import (
    CreatedSubscriptionSchema,
    DeliveryPageSchema,
    DeliveryQuerySchema,
    DeliverySchema,
    SubscriptionListSchema,
    SubscriptionRequestSchema,
    SubscriptionSchema,
)
from app.extensions import resources

blp = HubBlueprint("subscriptions", __name__, url_prefix="/v1",
                   audit_resource_type="subscriptions",
                   description="Webhook subscriptions to the tenant's canonical events, signed "
                               "per Standard Webhooks, with their delivery history.")

_NOT_FOUND = "No such subscription for this tenant."


@blp.post("/subscriptions")
@requires_scopes("events:subscribe")
@blp.arguments(SubscriptionRequestSchema)
@blp.arguments(NoParametersSchema, location="query")
@blp.response(201, CreatedSubscriptionSchema, description="Created. `secret` signs every "
              "delivery and is shown only in this answer.")
@blp.alt_response(422, description="Invalid fields, or a URL the SSRF guard refuses (not "
                  "https, or resolving to a loopback, private, link-local or metadata "
                  "address); `errors` says why. Nothing is stored.")
def create_subscription(body: dict, _query: dict):
    """Subscribe a URL to event types, optionally filtered by unit and medication."""
    principal = current_principal()
    hub = resources()
    chosen = body.get("filter") or {}
    return service.create_subscription(
        db_session=hub.database.session, settings=hub.settings, tenant_id=principal.tenant_id,
        client_id=principal.client_id, url=body["url"], event_types=body["event_types"],
        unit=chosen.get("unit"), medication=chosen.get("medication"), payload=body["payload"])


@blp.get("/subscriptions")
@requires_scopes("events:subscribe")
@blp.arguments(NoParametersSchema, location="query")
@blp.response(200, SubscriptionListSchema)
def list_subscriptions(_query: dict):
    """The tenant's subscriptions, with their status and failure counts."""
    return {"items": service.list_subscriptions(db_session=resources().database.session,
                                                tenant_id=current_principal().tenant_id)}


@blp.get("/subscriptions/<string:subscription_id>")
@requires_scopes("events:subscribe")
@blp.arguments(NoParametersSchema, location="query")
@blp.response(200, SubscriptionSchema)
@blp.alt_response(404, description=_NOT_FOUND)
def get_subscription(_query: dict, subscription_id: str):
    """One subscription: active or paused (and why), and its delivery counts."""
    return service.get_subscription(db_session=resources().database.session,
                                    tenant_id=current_principal().tenant_id,
                                    subscription_id=subscription_id)


@blp.delete("/subscriptions/<string:subscription_id>")
@requires_scopes("events:subscribe")
@blp.arguments(NoParametersSchema, location="query")
@blp.response(204)
@blp.alt_response(404, description=_NOT_FOUND)
def delete_subscription(_query: dict, subscription_id: str):
    """Delete a subscription and its delivery history."""
    service.delete_subscription(db_session=resources().database.session,
                                tenant_id=current_principal().tenant_id,
                                subscription_id=subscription_id)


@blp.post("/subscriptions/<string:subscription_id>/resume")
@requires_scopes("events:subscribe")
@blp.arguments(NoParametersSchema, location="query")
@blp.response(200, SubscriptionSchema)
@blp.alt_response(404, description=_NOT_FOUND)
@blp.alt_response(409, description="The subscription is not paused.")
def resume_subscription(_query: dict, subscription_id: str):
    """Resume a paused subscription; deliveries held while it was paused are sent."""
    return service.resume_subscription(db_session=resources().database.session,
                                       tenant_id=current_principal().tenant_id,
                                       subscription_id=subscription_id)


@blp.get("/subscriptions/<string:subscription_id>/deliveries")
@requires_scopes("events:subscribe")
@blp.arguments(DeliveryQuerySchema, location="query")
@blp.response(200, DeliveryPageSchema)
@blp.alt_response(404, description=_NOT_FOUND)
def list_deliveries(query: dict, subscription_id: str):
    """The subscription's deliveries, newest first (PHI-free: ids, outcomes, times)."""
    hub = resources()
    return service.list_deliveries(
        db_session=hub.database.session, settings=hub.settings,
        tenant_id=current_principal().tenant_id, subscription_id=subscription_id,
        status=query.get("status"), page_size=query["page_size"], cursor=query.get("cursor"))


@blp.post("/subscriptions/<string:subscription_id>/deliveries/<string:delivery_id>/replay")
@requires_scopes("events:subscribe")
@blp.arguments(NoParametersSchema, location="query")
@blp.response(202, DeliverySchema)
@blp.alt_response(404, description="No such delivery of this subscription.")
@blp.alt_response(409, description="The delivery is not dead-lettered.")
def replay_delivery(_query: dict, subscription_id: str, delivery_id: str):
    """Send a dead-lettered delivery again (same `webhook-id`, a fresh retry horizon)."""
    return service.replay_delivery(db_session=resources().database.session,
                                   tenant_id=current_principal().tenant_id,
                                   subscription_id=subscription_id, delivery_id=delivery_id)
