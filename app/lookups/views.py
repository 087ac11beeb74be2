"""``/v1/administrations``, ``/v1/containers/{id}/origin``, ``/v1/inventory``.

Each answers canonical JSON, or FHIR R4 JSON when the client asks for
``application/fhir+json``; ``X-Cache`` says HIT, MISS or STALE, or SNAPSHOT for an answer from
the hub's inventory snapshot, whose time ``X-Hub-Synced-At`` gives.
"""

from __future__ import annotations

from flask import g, jsonify, request, url_for

from app.api import FHIR_BUNDLE_SCHEMA, RETRY_AFTER, HubBlueprint
from app.auth.principal import current_principal, requires_scopes
from app.canonical.parameters import NoParametersSchema
from app.canonical.times import format_utc
from app.extensions import resources
from app.lookups import fhir, service
from app.lookups.schemas import (
    AdministrationPageSchema,
    AdministrationQuerySchema,
    ContainerOriginOutSchema,
    ContainerPathSchema,
    DispensePageSchema,
    DispenseQuerySchema,
    InventoryPageSchema,
    InventoryQuerySchema,
)
from app.phi.policy import PolicyMissing
from app.problems import problem_response

# Each view declares its own resource type: one blueprint serves three.
blp = HubBlueprint("lookups", __name__, url_prefix="/v1",
                   description="Synchronous lookups across the tenant's hospital systems.")

_ERRORS = {403: "Scope or entitlement missing (checked before any downstream call).",
           502: "The hospital system answered something unusable.",
           503: "The hospital system is unavailable, and neither the cache nor the hub's "
                "snapshot of it has the answer; see `Retry-After`."}
_ANSWER_HEADERS = {
    "X-Cache": {"description": "HIT, MISS or STALE (from the hub's cache), or SNAPSHOT (from "
                               "the hub's own copy of the system).", "required": True,
                "schema": {"type": "string", "enum": ["HIT", "MISS", "STALE", "SNAPSHOT"]}},
    "X-Hub-Synced-At": {"description": "With SNAPSHOT: when the snapshot was taken (UTC).",
                        "schema": {"type": "string", "format": "date-time"}},
}


def _lookup_response(schema, *, description: str):
    """Document a lookup's answer, as canonical JSON (listed first: the docs UI asks for it
    by default) or a FHIR R4 Bundle, and the errors every lookup can answer."""

    def document(view):
        view = blp.alt_response(200, schema=FHIR_BUNDLE_SCHEMA, content_type=fhir.FHIR_JSON,
                                description=description, headers=_ANSWER_HEADERS,
                                success=True)(view)
        for status, error in _ERRORS.items():
            view = blp.alt_response(status, description=error,
                                    headers=RETRY_AFTER if status == 503 else None)(view)
        return blp.response(200, schema, description=description,
                            headers=_ANSWER_HEADERS)(view)

    return document


@blp.errorhandler(PolicyMissing)
def _no_policy(_error: PolicyMissing):
    return problem_response(403, detail="No PHI policy lets this client read this resource.",
                            problem_type="no-phi-policy")


def _wants_fhir() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", fhir.FHIR_JSON])
    return best == fhir.FHIR_JSON and request.accept_mimetypes[fhir.FHIR_JSON] > 0


def _answer(answer: service.LookupAnswer, body, content_type: str = "application/json"):
    # The payload is already the minimized canonical shape (the PHI policy's allow-list made
    # it, and the cache holds it so): it is sent as it is, not re-serialized through the
    # response schemas, which only document it.
    g.audit_target_system = answer.target_system
    response = jsonify(body)
    response.headers["Content-Type"] = content_type
    if answer.cache_status is not None:
        response.headers["X-Cache"] = answer.cache_status
    if answer.synced_at is not None:
        response.headers["X-Hub-Synced-At"] = format_utc(answer.synced_at)
    response.headers["Vary"] = "Accept, Authorization"
    return response


def _next_url(endpoint: str, next_cursor: str | None) -> str | None:
    if not next_cursor:
        return None
    args = {**request.args.to_dict(), "cursor": next_cursor}
    return url_for(endpoint, _external=True, **args)


@blp.get("/administrations")
@blp.audits("administrations")
@requires_scopes("administrations:read")
@blp.arguments(AdministrationQuerySchema, location="query")
@_lookup_response(AdministrationPageSchema, description="A page of administrations. With "
                  "`Accept: application/fhir+json`, a FHIR R4 Bundle of MedicationAdministration.")
def list_administrations(query: dict):
    """Dose administrations from the tenant's administration system (eMAR).

    Filter by unit, medication and time window; follow `next_cursor` for the next page. Patients
    appear only as tenant-scoped pseudonyms with a birth year (or `90+`); names, MRNs, dates of
    birth and notes never leave the hub.
    """
    hub = resources()
    answer = service.list_administrations(
        db_session=hub.database.session, redis_client=hub.redis, settings=hub.settings,
        principal=current_principal(), unit=query.get("unit"),
        ndc11=query.get("medication"), since=query.get("since"), until=query.get("until"),
        cursor=query.get("cursor"), page_size=query["page_size"])
    if _wants_fhir():
        bundle = fhir.administrations_bundle(
            answer.payload["items"], tenant=current_principal().tenant, self_url=request.url,
            next_url=_next_url("lookups.list_administrations", answer.payload["next_cursor"]))
        return _answer(answer, bundle, fhir.FHIR_JSON)
    return _answer(answer, answer.payload)


# ``path``, not ``string``: an id with an encoded slash (%2F) reaches the id grammar (422)
# instead of falling through the routing.
@blp.get("/containers/<path:container_id>/origin", parameters=[{
    "in": "path", "name": "container_id", "description": "The inventory system's container id.",
    "example": "NGH-C00000001"}])
@blp.audits("container_origin")
@requires_scopes("inventory:read")
@blp.arguments(ContainerPathSchema, location="path")
@blp.arguments(NoParametersSchema, location="query")
@_lookup_response(ContainerOriginOutSchema, description="The container and its movement "
                  "chain. With `Accept: application/fhir+json`, a FHIR R4 Bundle (Medication "
                  "and one SupplyDelivery per movement).")
@blp.alt_response(404, description="The inventory system has no such container.")
def container_origin(_path: dict, _query: dict, container_id: str):
    """Where a container came from: medication, lot, expiry and its movements (pharmacy →
    cabinet → unit), with locations in canonical codes and times in UTC."""
    hub = resources()
    answer = service.container_origin(
        db_session=hub.database.session, redis_client=hub.redis, settings=hub.settings,
        principal=current_principal(), container_id=container_id)
    if _wants_fhir():
        return _answer(answer, fhir.container_origin_bundle(
            answer.payload, tenant=current_principal().tenant), fhir.FHIR_JSON)
    return _answer(answer, answer.payload)


@blp.get("/inventory")
@blp.audits("inventory")
@requires_scopes("inventory:read")
@blp.arguments(InventoryQuerySchema, location="query")
@_lookup_response(InventoryPageSchema, description="A page of containers on hand. With "
                  "`Accept: application/fhir+json`, a FHIR R4 Bundle of Medication.")
def inventory_on_hand(query: dict):
    """Containers on hand (stocked in a cabinet or dispensed to a unit), by unit and/or
    medication, from the tenant's inventory system."""
    hub = resources()
    answer = service.inventory_on_hand(
        db_session=hub.database.session, redis_client=hub.redis, settings=hub.settings,
        principal=current_principal(), unit=query.get("unit"),
        ndc11=query.get("medication"), cursor=query.get("cursor"),
        page_size=query["page_size"])
    if _wants_fhir():
        bundle = fhir.inventory_bundle(
            answer.payload["items"], tenant=current_principal().tenant, self_url=request.url,
            next_url=_next_url("lookups.inventory_on_hand", answer.payload["next_cursor"]))
        return _answer(answer, bundle, fhir.FHIR_JSON)
    return _answer(answer, answer.payload)


@blp.get("/dispenses")
@blp.audits("dispenses")
@requires_scopes("dispenses:read")
@blp.arguments(DispenseQuerySchema, location="query")
@blp.response(200, DispensePageSchema, description="A page of dispenses, oldest first.")
@blp.alt_response(403, description=_ERRORS[403])
def list_dispenses(query: dict):
    """What the tenant's pharmacy system (System C) dispensed to its units.

    The pharmacy pushes its HL7 v2 messages to the hub (MLLP or `POST /v1/hl7`), so this
    answers from the hub's own store of them: no `X-Cache`, never stale. Filter by unit,
    medication and a window of dispense times; follow `next_cursor` for the next page.
    Patients appear only as tenant-scoped pseudonyms.
    """
    hub = resources()
    answer = service.list_dispenses(
        db_session=hub.database.session, settings=hub.settings, principal=current_principal(),
        unit=query.get("unit"), ndc11=query.get("medication"), since=query.get("since"),
        until=query.get("until"), cursor=query.get("cursor"), page_size=query["page_size"])
    return _answer(answer, answer.payload)
