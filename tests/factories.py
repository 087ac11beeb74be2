"""Factories of canonical records, shaped like the demo hospitals' data and checked by the schemas.

Each factory returns what a connector hands on (``app.connectors.base.checked``): JSON-ready
canonical values (dates and times as ISO text) that the canonical schema validates without
errors. Override any field by name, and a nested field with a double underscore (a ``date``
override is written as ISO text)::

    canonical_administration(patient__birth_date=date(1936, 3, 1), note=None)

Every identifier is synthetic, in the demo systems' formats (``NGH-A000004711``, ``MRN48213377``,
``RN20481``, barcodes ``30…``, the demo formulary's made-up NDCs), so tests that scan sinks for
PHI can seed these values and search for them.
"""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

from marshmallow import Schema, ValidationError

from app.canonical.schemas import AdministrationSchema, ContainerOriginSchema

_ADMINISTRATION: dict[str, Any] = {
    "administration_id": "NGH-A000004711",
    "unit": "ICU-3",
    "medication": {"ndc11": "95218036482", "name": "Morphine sulfate", "strength": "2 mg/mL"},
    "dose": {"quantity": 2.0, "unit": "mg"},
    "route": "IV",
    "administered_at": "2026-11-18T08:15:00Z",
    "container_barcode": "300000012345",
    "nurse_id": "RN20481",
    "patient": {"mrn": "MRN48213377", "name": "Maribel Okonkwo-Lindqvist", "birth_date": "1957-06-14"},
    "note": "Patient reported pain 7/10 before dose; Maribel resting after.",
}

_CONTAINER_ORIGIN: dict[str, Any] = {
    "container_id": "NGH-C00012345",
    "barcode": "300000012345",
    "medication": {"ndc11": "95218036482", "name": "Morphine sulfate", "strength": "2 mg/mL"},
    "lot": "K48213",
    "expires_on": "2027-09-30",
    "location": {"facility": "NGH", "unit": "ICU-3", "cabinet": None},
    "status": "dispensed",
    "movements": [
        {"movement_id": "NGH-C00012345-R", "type": "received", "from_location": None,
         "to_location": "PHARMACY", "at": "2026-11-16T14:02:11Z"},
        {"movement_id": "NGH-C00012345-S", "type": "stocked", "from_location": "PHARMACY",
         "to_location": "ICU-3-CAB1", "at": "2026-11-17T09:40:00Z"},
        {"movement_id": "NGH-C00012345-D", "type": "dispensed", "from_location": "ICU-3-CAB1",
         "to_location": "ICU-3", "at": "2026-11-18T08:05:27Z"},
    ],
}


def _with_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    record = copy.deepcopy(base)
    for name, value in overrides.items():
        *parents, last = name.split("__")
        target = record
        for parent in parents:
            target = target[parent]
        # Connectors hand dates on as ISO text, JSON-ready for the cache.
        target[last] = value.isoformat() if isinstance(value, date) else value
    return record


def _validated(record: dict[str, Any], schema: Schema) -> dict[str, Any]:
    errors = schema.validate(record)
    if errors:
        raise ValidationError(errors)
    return record


def canonical_administration(**overrides: Any) -> dict[str, Any]:
    """Return one canonical administration (PHI included), valid for AdministrationSchema."""
    return _validated(_with_overrides(_ADMINISTRATION, overrides), AdministrationSchema())


def canonical_container_origin(**overrides: Any) -> dict[str, Any]:
    """Return one canonical container with its movements, valid for ContainerOriginSchema."""
    return _validated(_with_overrides(_CONTAINER_ORIGIN, overrides), ContainerOriginSchema())


def canonical_container(**overrides: Any) -> dict[str, Any]:
    """Return one canonical container without movements (the ContainerSchema fields)."""
    container = canonical_container_origin(**overrides)
    del container["movements"]
    return container
