"""FHIR JSON for lookups answered with ``Accept: application/fhir+json``.

The hub speaks FHIR R4 to its clients. Resources are built as models of ``fhir.resources.R4B``
(FHIR 4.3.0, the R4 line the maintained library ships; the resources used here have the same
shape in R4 4.0.1), so every document is validated while it is built and serialized by the
library with empty elements left out.

Input is always a MINIMIZED canonical record (the output of :func:`app.phi.policy.minimize`),
never a raw one. What of a patient (and of the nurse) goes into a document is decided by
:func:`app.phi.boundary.people_for_fhir`: pseudonym identifiers in tenant systems
(``urn:medication-hub:{tenant}:patient``) only, and a record that still carries PHI fields is
refused there.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.supplydelivery import SupplyDelivery

from app.phi.boundary import people_for_fhir

FHIR_JSON = "application/fhir+json"

NDC_SYSTEM = "http://hl7.org/fhir/sid/ndc"
STRUCTURE_DEFINITIONS = "https://medication-hub.example/fhir/StructureDefinition/"
UNIT_EXTENSION = STRUCTURE_DEFINITIONS + "unit"
LOCATION_EXTENSION = STRUCTURE_DEFINITIONS + "location"
CONTAINER_STATUS_EXTENSION = STRUCTURE_DEFINITIONS + "container-status"
FROM_LOCATION_EXTENSION = STRUCTURE_DEFINITIONS + "from-location"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_NOT_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9\-.]+")


def identifier_system(tenant: str, kind: str) -> str:
    """Return the identifier system of one tenant's ``patient``, ``staff`` or ``container`` ids."""
    return f"urn:medication-hub:{tenant}:{kind}"


def fhir_id(value: str | None) -> str | None:
    """Return ``value`` as a FHIR id (``[A-Za-z0-9-.]{1,64}``).

    A valid id is kept as it is. Anything else becomes its allowed characters plus a short hash
    of the original, so two different native ids never meet in one FHIR id.
    """
    if value is None:
        return None
    if _FHIR_ID.fullmatch(value):
        return value
    readable = _NOT_ID_CHARACTERS.sub("-", value)[:40].strip("-")
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"{readable}-{digest}" if readable else digest


# --- elements -------------------------------------------------------------------------------

def _date_text(value: date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, date) else value


def _ndc_concept(medication: Mapping | None) -> dict:
    medication = medication or {}
    name, strength = medication.get("name"), medication.get("strength")
    return {
        "coding": [{"system": NDC_SYSTEM, "code": medication.get("ndc11"), "display": name}],
        "text": " ".join(part for part in (name, strength) if part) or None,
    }


def _identifier_reference(tenant: str, kind: str, value: str | None) -> dict:
    """A reference by identifier only: the hub has no Patient or Practitioner resources to point at."""
    if value is None:
        return {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "unknown"}]}
    return {"identifier": {"system": identifier_system(tenant, kind), "value": value}}


def _string_extension(url: str, value: str | None) -> dict | None:
    return None if value is None else {"url": url, "valueString": value}


def _location_extension(location: Mapping | None) -> dict | None:
    location = location or {}
    parts = [{"url": part, "valueString": location[part]}
             for part in ("facility", "unit", "cabinet") if location.get(part) is not None]
    return {"url": LOCATION_EXTENSION, "extension": parts} if parts else None


def _present(*items: dict | None) -> list[dict] | None:
    kept = [item for item in items if item is not None]
    return kept or None


def _links(self_url: str, next_url: str | None) -> list[dict]:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return links


def _json(bundle: Bundle) -> dict:
    return bundle.model_dump(mode="json", exclude_none=True)


# --- resources ------------------------------------------------------------------------------

def medication_administration(record: Mapping, *, tenant: str) -> MedicationAdministration:
    """Return one minimized administration as a FHIR MedicationAdministration."""
    people = people_for_fhir(record)
    dose = record.get("dose") or {}
    route = record.get("route")
    nurse_ref = people["staff"]
    barcode = record.get("container_barcode")
    dosage = {
        "route": {"text": route} if route else None,
        "dose": ({"value": dose["quantity"], "unit": dose.get("unit")}
                 if dose.get("quantity") is not None else None),
    }
    return MedicationAdministration(
        id=fhir_id(record.get("administration_id")),
        # MedicationAdministration has no location element; the unit rides in an extension.
        extension=_present(_string_extension(UNIT_EXTENSION, record.get("unit"))),
        status="completed",
        medicationCodeableConcept=_ndc_concept(record.get("medication")),
        subject=_identifier_reference(tenant, "patient", people["patient"]),
        effectiveDateTime=record.get("administered_at"),
        performer=([{"actor": _identifier_reference(tenant, "staff", nurse_ref)}]
                   if nurse_ref is not None else None),
        dosage=dosage if any(dosage.values()) else None,
        device=[_identifier_reference(tenant, "container", barcode)] if barcode else None,
    )


def medication(container: Mapping, *, tenant: str) -> Medication:
    """Return one minimized container as a FHIR Medication with its lot, expiry and location."""
    barcode = container.get("barcode")
    return Medication(
        id=fhir_id(container.get("container_id")),
        extension=_present(_location_extension(container.get("location")),
                           _string_extension(CONTAINER_STATUS_EXTENSION, container.get("status"))),
        identifier=([{"system": identifier_system(tenant, "container"), "value": barcode}]
                    if barcode else None),
        code=_ndc_concept(container.get("medication")),
        batch={"lotNumber": container.get("lot"),
               "expirationDate": _date_text(container.get("expires_on"))},
    )


def supply_delivery(movement: Mapping, *, medication_url: str) -> SupplyDelivery:
    """Return one movement of a container as a completed FHIR SupplyDelivery of it."""
    to_location = movement.get("to_location")
    return SupplyDelivery(
        id=fhir_id(movement.get("movement_id")),
        # SupplyDelivery has a destination but no origin element.
        extension=_present(_string_extension(FROM_LOCATION_EXTENSION, movement.get("from_location"))),
        status="completed",
        type={"text": movement["type"]} if movement.get("type") else None,
        occurrenceDateTime=movement.get("at"),
        suppliedItem={"itemReference": {"reference": medication_url}},
        destination={"display": to_location} if to_location else None,
    )


def _urn(tenant: str, kind: str, native_id: str) -> str:
    # Name-based UUIDs: the same container gives the same document every time (cacheable).
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{identifier_system(tenant, kind)}:{native_id}").urn


# --- bundles --------------------------------------------------------------------------------

def administrations_bundle(records: Iterable[Mapping], *, tenant: str, self_url: str,
                           next_url: str | None) -> dict:
    """Return a page of minimized administrations as a FHIR searchset Bundle (JSON dict).

    ``total`` is left out: pages are walked by cursor and the hub does not count the matches.
    """
    entries = [{"resource": medication_administration(record, tenant=tenant), "search": {"mode": "match"}}
               for record in records]
    return _json(Bundle(type="searchset", link=_links(self_url, next_url), entry=entries or None))


def inventory_bundle(containers: Iterable[Mapping], *, tenant: str, self_url: str,
                     next_url: str | None) -> dict:
    """Return a page of minimized containers as a FHIR searchset Bundle of Medication."""
    entries = [{"resource": medication(container, tenant=tenant), "search": {"mode": "match"}}
               for container in containers]
    return _json(Bundle(type="searchset", link=_links(self_url, next_url), entry=entries or None))


def container_origin_bundle(origin: Mapping, *, tenant: str) -> dict:
    """Return where a container came from as a FHIR collection Bundle.

    The container is a Medication; each movement, oldest first, is a SupplyDelivery whose
    supplied item points at that Medication by its ``urn:uuid`` full URL.
    """
    container_key = origin.get("container_id") or origin.get("barcode") or ""
    medication_url = _urn(tenant, "container", container_key)
    entries: list[dict[str, Any]] = [
        {"fullUrl": medication_url, "resource": medication(origin, tenant=tenant)}]
    for position, movement in enumerate(origin.get("movements") or ()):
        if movement is None:
            continue
        movement_key = movement.get("movement_id") or f"{container_key}#{position}"
        movement_url = _urn(tenant, "movement", movement_key)
        entries.append({"fullUrl": movement_url,
                        "resource": supply_delivery(movement, medication_url=medication_url)})
    return _json(Bundle(type="collection", entry=entries))
