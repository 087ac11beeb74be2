"""The inventory's legacy API, ``/legacy/v1/sites/{site}/...``: what the old point-to-point
link to the eMAR still calls while it is migrated onto the hub (the hub's parallel run compares
the two).

It answers a container's origin, and the stock on hand of a unit or medication, in the older
native shape, with the quirks of that version, on purpose, so a parallel run has real
differences to find:

- times are local to the site and carry no offset (read in the wrong zone, every time differs);
- the most recent movement is left out (the old version read the history before it was
  complete);
- lot numbers are spelled in lower case.
"""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, g, jsonify, request

from demo_systems import params
from demo_systems.front_desk import front_desk
from demo_systems.inventory.store import ContainerFilter

MAX_LIMIT = 500
_SCAN_PAGE = 500

legacy_api = Blueprint("inventory_legacy_api", __name__, url_prefix="/legacy/v1/sites/<site>")


def _place(place: dict | None) -> tuple[str | None, str | None]:
    return (place["unit"], place["cabinet"]) if place else (None, None)


def _local_without_offset(moment: str) -> str:
    return dt.datetime.fromisoformat(moment).replace(tzinfo=None).isoformat()


def _move(movement: dict) -> dict:
    from_unit, from_cabinet = _place(movement["from"])
    to_unit, to_cabinet = _place(movement["to"])
    return {"move_no": movement["movementId"], "move_type": movement["type"].upper(),
            "from_unit": from_unit, "from_cabinet": from_cabinet,
            "to_unit": to_unit, "to_cabinet": to_cabinet,
            "moved_at": _local_without_offset(movement["at"])}


def _container(container: dict) -> dict:
    return {
        "container_no": container["containerId"],
        "barcode_no": container["barcode"],
        "ndc": container["drug"]["ndc"],
        "drug_name": container["drug"]["name"],
        "drug_strength": container["drug"]["strength"],
        "lot_no": container["lotNumber"].lower(),
        "expiry_date": container["expiresOn"],
        "facility_code": container["location"]["facility"],
        "unit_code": container["location"]["unit"],
        "cabinet_code": container["location"]["cabinet"],
        "state": container["status"],
    }


@legacy_api.get("/containers/<container_id>/origin")
def container_origin(container_id: str):
    """One container with its moves inlined, in the legacy shape (quirks above)."""
    params.refuse_unknown(request.args, ())
    store = front_desk().store
    container = store.container(g.site.slug, container_id)
    history = store.container_movements(g.site.slug, container_id)
    if container is None or history is None:
        abort(404, description="no such container")
    return jsonify({**_container(container),
                    "moves": [_move(movement) for movement in history[:-1]]})


@legacy_api.get("/stock")
def stock():
    """The first ``limit`` containers on hand (stocked or dispensed), by unit and/or NDC, in
    the order of the current API's listing; no paging, as the old version had none."""
    params.refuse_unknown(request.args, ("unit", "ndc", "limit"))
    limit = params.integer(request.args, "limit", default=100, minimum=1, maximum=MAX_LIMIT)
    where = ContainerFilter(unit=params.text(request.args, "unit"),
                            ndc=params.text(request.args, "ndc"))
    store = front_desk().store
    on_hand: list[dict] = []
    offset = 0
    while len(on_hand) < limit:
        total, page = store.containers(g.site.slug, where, offset=offset, limit=_SCAN_PAGE)
        on_hand += [item for item in page if item["status"] != "received"]
        offset += len(page)
        if not page or offset >= total:
            break
    return jsonify(stock=[_container(item) for item in on_hand[:limit]])
