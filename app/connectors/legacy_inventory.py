"""Connector of the legacy inventory endpoint (the old point-to-point link of System A), asked
only by parallel runs (``app.parallel_runs``) while that link is migrated onto the hub.

Native shape (the system's older ``/legacy/v1`` API): snake_case, one flat document per
container (its moves inlined for an origin), ``ndc`` as dashed NDC-10, move types in capitals,
and local times *without* an offset, read in the zone the parallel run is configured with.
Stock on hand is one unpaged list of at most ``limit`` containers. ``X-Api-Key``
authentication, as the current API.
"""

from __future__ import annotations

from app.canonical.ndc import normalize_ndc
from app.canonical.schemas import ContainerOriginSchema, ContainerSchema, MovementSchema
from app.canonical.times import format_utc, to_utc
from app.canonical.units import canonical_unit
from app.connectors.base import (
    ConnectionOptionsSchema,
    ConnectionTarget,
    checked,
    map_records,
    resource_url,
)
from app.connectors.inventory import ndc10_candidates
from app.connectors.registry import Connector
from app.connectors.resilience import get_json

SYSTEM = "legacy_inventory"
_MOVEMENT_TYPES = {"RECEIVE": "received", "STOCK": "stocked", "DISPENSE": "dispensed"}
_container_schema = ContainerSchema()
_origin_schema = ContainerOriginSchema()
_movement_schema = MovementSchema()


def _place(target: ConnectionTarget, unit: str | None, cabinet: str | None) -> str | None:
    if cabinet:
        return cabinet
    return canonical_unit(unit, target.unit_codes) if unit else None


def _movement(target: ConnectionTarget, native: dict) -> dict:
    return {
        "movement_id": native["move_no"],
        "type": _MOVEMENT_TYPES[native["move_type"]],
        "from_location": _place(target, native.get("from_unit"), native.get("from_cabinet")),
        "to_location": _place(target, native["to_unit"], native.get("to_cabinet")),
        "at": format_utc(to_utc(native["moved_at"], target.timezone)),
    }


def _get(target: ConnectionTarget, path: tuple[str, ...], params: dict | None = None):
    return get_json(system=SYSTEM, url=resource_url(target.base_url, *path),
                    params=params or {}, headers={"X-Api-Key": target.credential},
                    breaker=target.breaker, policy=target.policy)


def _container(target: ConnectionTarget, native: dict) -> dict:
    return {
        "container_id": native["container_no"],
        "barcode": native["barcode_no"],
        "medication": {"ndc11": normalize_ndc(native["ndc"]), "name": native["drug_name"],
                       "strength": native.get("drug_strength")},
        "lot": native["lot_no"],
        "expires_on": native["expiry_date"],
        "location": {"facility": native["facility_code"],
                     "unit": canonical_unit(native["unit_code"], target.unit_codes)
                     if native.get("unit_code") else None,
                     "cabinet": native.get("cabinet_code")},
        "status": native["state"],
    }


def container_origin(target: ConnectionTarget, container_id: str) -> dict:
    """Return a container with its movement chain (canonical), as the legacy endpoint tells it."""
    native = _get(target, ("containers", container_id, "origin"))
    record = _container(target, native)
    record["movements"] = map_records(native.get("moves", []),
                                      lambda move: _movement(target, move), _movement_schema,
                                      system=SYSTEM, resource="movement")
    return checked(record, _origin_schema)


def containers_on_hand(target: ConnectionTarget, *, unit: str | None, ndc11: str | None,
                       position: tuple[int, int], page_size: int
                       ) -> tuple[list[dict], tuple[int, int] | None]:
    """Return the first ``page_size`` containers on hand (canonical), by unit and/or
    medication, in the order the hub's first page lists them: one query per NDC-10 spelling
    the system could use for the medication, in the live connector's order. The old API has
    no paging: only the first page (``position`` (0, 0)) exists, and no next one."""
    if position != (0, 0):
        return [], None
    spellings: list[str | None] = ndc10_candidates(ndc11) if ndc11 else [None]
    containers: list[dict] = []
    for spelling in spellings:
        if len(containers) >= page_size:
            break
        params: dict = {"limit": page_size - len(containers)}
        if unit:
            params["unit"] = target.mapped_native_unit(unit) or unit
        if spelling:
            params["ndc"] = spelling
        answer = _get(target, ("stock",), params)
        containers += map_records(answer["stock"], lambda item: _container(target, item),
                                  _container_schema, system=SYSTEM, resource="container")
    return containers[:page_size], None


CONNECTOR = Connector(
    name="inventory-legacy", product="inventory", title="Medication inventory (legacy API)",
    transport="http-pull", options_schema=ConnectionOptionsSchema,
    capabilities={"container_origin": container_origin, "containers_on_hand": containers_on_hand},
    events=())
