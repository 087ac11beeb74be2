"""Connector of inventory systems (System A): containers, their movements, stock on hand.

Native shape: camelCase, ``drug.ndc`` as dashed NDC-10, units like ``ICU-3``, local times with
an offset, offset/limit paging, ``X-Api-Key`` authentication.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from datetime import datetime

from app.canonical.ndc import normalize_ndc
from app.canonical.schemas import (
    ContainerMovedSchema,
    ContainerOriginSchema,
    ContainerSchema,
    LocationCatalogueEntrySchema,
    MovementSchema,
)
from app.canonical.times import format_utc, to_utc
from app.canonical.units import canonical_unit
from app.connectors.base import (
    ChangePage,
    ConnectionOptionsSchema,
    ConnectionTarget,
    checked,
    map_records,
    resource_url,
)
from app.connectors.registry import Connector
from app.connectors.resilience import get_json

SYSTEM = "inventory"
NATIVE_PAGE_LIMIT = 500
_MOVEMENT_TYPES = {"receive": "received", "stock": "stocked", "dispense": "dispensed"}
_container_schema = ContainerSchema()
_origin_schema = ContainerOriginSchema()
_movement_schema = MovementSchema()
_catalogue_entry_schema = LocationCatalogueEntrySchema()
_container_moved_schema = ContainerMovedSchema()


def _get(target: ConnectionTarget, path: tuple[str, ...], params: dict | None = None) -> dict:
    return get_json(system=SYSTEM, url=resource_url(target.base_url, *path), params=params or {},
                    headers={"X-Api-Key": target.credential}, breaker=target.breaker,
                    policy=target.policy)


def _native_pages(target: ConnectionTarget, path: tuple[str, ...], params: dict) -> Iterator[list[dict]]:
    """Yield the native items of an offset/limit listing, one page at a time, until the
    system's ``total`` is reached (bounded memory: one page)."""
    offset = 0
    while True:
        answer = _get(target, path, {**params, "offset": offset, "limit": NATIVE_PAGE_LIMIT})
        items = answer.get("items", [])
        if items:
            yield items
        offset += len(items)
        if not items or offset >= answer.get("total", 0):
            return


def _native_unit(target: ConnectionTarget, unit: str) -> str:
    # Without a mapping, this system writes units the canonical way (ICU-3).
    return target.mapped_native_unit(unit) or unit


def _location_code(target: ConnectionTarget, place: dict | None) -> str | None:
    if not place:
        return None
    return place.get("cabinet") or canonical_unit(place["unit"], target.unit_codes)


def _container(target: ConnectionTarget, native: dict) -> dict:
    location = native["location"]
    return {
        "container_id": native["containerId"],
        "barcode": native["barcode"],
        "medication": {"ndc11": normalize_ndc(native["drug"]["ndc"]),
                       "name": native["drug"]["name"],
                       "strength": native["drug"].get("strength")},
        "lot": native["lotNumber"],
        "expires_on": native["expiresOn"],
        "location": {"facility": location["facility"],
                     "unit": canonical_unit(location["unit"], target.unit_codes)
                     if location.get("unit") else None,
                     "cabinet": location.get("cabinet")},
        "status": native["status"],
    }


def _movement(target: ConnectionTarget, native: dict) -> dict:
    return {
        "movement_id": native["movementId"],
        "type": _MOVEMENT_TYPES[native["type"]],
        "from_location": _location_code(target, native.get("from")),
        "to_location": _location_code(target, native["to"]),
        "at": format_utc(to_utc(native["at"], target.timezone)),
    }


def _catalogue_entry(target: ConnectionTarget, native: tuple[str, dict, str | None]) -> dict:
    kind, place, native_parent = native
    if kind == "cabinet":
        return {"code": place["code"], "kind": kind, "name": place.get("name"),
                "parent": canonical_unit(native_parent, target.unit_codes)}
    return {"code": canonical_unit(place["code"], target.unit_codes), "kind": kind,
            "name": place.get("name"), "parent": None}


def ndc10_candidates(ndc11: str) -> list[str]:
    """The dashed NDC-10 spellings an NDC-11 may have in this system (one per layout whose
    padding zero is present), since the layout is not recoverable from 11 digits."""
    labeler, product, package = ndc11[:5], ndc11[5:9], ndc11[9:]
    candidates = []
    if labeler.startswith("0"):
        candidates.append(f"{labeler[1:]}-{product}-{package}")
    if product.startswith("0"):
        candidates.append(f"{labeler}-{product[1:]}-{package}")
    if package.startswith("0"):
        candidates.append(f"{labeler}-{product}-{package[1:]}")
    return candidates


def container_origin(target: ConnectionTarget, container_id: str) -> dict:
    """Return a container with its movement chain (canonical), oldest movement first."""
    native = _get(target, ("containers", container_id))
    history = _get(target, ("containers", container_id, "movements"))
    record = _container(target, native)
    record["movements"] = map_records(history.get("items", []),
                                      lambda item: _movement(target, item), _movement_schema,
                                      system=SYSTEM, resource="movement")
    return checked(record, _origin_schema)


def containers_on_hand(target: ConnectionTarget, *, unit: str | None, ndc11: str | None,
                       position: tuple[int, int], page_size: int
                       ) -> tuple[list[dict], tuple[int, int] | None]:
    """Return a page of containers on hand (stocked in a cabinet or dispensed to a unit), by
    unit and/or medication, and the position to continue from (None on the last page).

    ``position`` is (NDC-10 spelling index, offset): a medication filter may need one query per
    spelling the system could use for it.
    """
    spellings: list[str | None] = ndc10_candidates(ndc11) if ndc11 else [None]
    spelling_index, offset = position
    page: list[dict] = []
    while spelling_index < len(spellings) and len(page) < page_size:
        params = {"offset": offset, "limit": min(NATIVE_PAGE_LIMIT, page_size - len(page))}
        if unit:
            params["unit"] = _native_unit(target, unit)
        if spellings[spelling_index]:
            params["ndc"] = spellings[spelling_index]
        answer = _get(target, ("containers",), params)
        items = answer.get("items", [])
        page += map_records((item for item in items if item.get("status") != "received"),
                            lambda item: _container(target, item), _container_schema,
                            system=SYSTEM, resource="container")
        offset += len(items)
        if not items or offset >= answer.get("total", 0):
            spelling_index, offset = spelling_index + 1, 0
    more = spelling_index < len(spellings)
    return page, ((spelling_index, offset) if more else None)


def dispensed_barcodes(target: ConnectionTarget, *, unit: str, since: datetime,
                       until: datetime) -> set[str]:
    """Return the barcodes of containers dispensed to ``unit`` in [since, until), paging
    through the system's movements (bounded memory: one page plus the barcode set)."""
    barcodes: set[str] = set()
    for items in _native_pages(target, ("movements",), {
            "toUnit": _native_unit(target, unit), "type": "dispense", "since": format_utc(since),
            "until": format_utc(until)}):
        for movement in items:
            barcode = movement.get("barcode")
            if isinstance(barcode, str) and barcode:
                barcodes.add(barcode)
    return barcodes


def dispensed_by_medication(target: ConnectionTarget, *, unit: str, since: datetime,
                            until: datetime) -> dict[str, int]:
    """Return how many containers were dispensed to ``unit`` in [since, until), per NDC-11.

    A movement does not name its drug: the window's dispense movements say which containers
    left, the unit's dispensed containers say what each one held (bounded memory: one page plus
    the window's barcodes)."""
    barcodes = dispensed_barcodes(target, unit=unit, since=since, until=until)
    counts: dict[str, int] = {}
    if not barcodes:
        return counts
    for items in _native_pages(target, ("containers",), {
            "unit": _native_unit(target, unit), "status": "dispensed"}):
        for native in items:
            if native.get("barcode") not in barcodes:
                continue
            try:
                ndc11 = normalize_ndc(native["drug"]["ndc"])
            except (KeyError, TypeError, ValueError):
                continue  # a container whose drug cannot be read counts for no medication
            counts[ndc11] = counts.get(ndc11, 0) + 1
    return counts


def unit_codes(target: ConnectionTarget) -> list[str]:
    """Return the canonical codes of the site's units (pharmacy excluded)."""
    catalogue = _get(target, ("locations",))
    return sorted(canonical_unit(unit["code"], target.unit_codes)
                  for unit in catalogue.get("units", []))


def location_catalogue(target: ConnectionTarget) -> list[dict]:
    """Return the site's places (canonical): its pharmacy, its units, and each unit's cabinets
    with the unit as their parent. A place that cannot be mapped is skipped, and so are the
    cabinets of a unit whose code cannot be read."""
    catalogue = _get(target, ("locations",))
    places: list[tuple[str, dict, str | None]] = []
    if catalogue.get("pharmacy"):
        places.append(("pharmacy", catalogue["pharmacy"], None))
    for unit in catalogue.get("units", []):
        places.append(("unit", unit, None))
        places += [("cabinet", cabinet, unit.get("code")) for cabinet in unit.get("cabinets", [])]
    return map_records(places, lambda place: _catalogue_entry(target, place),
                       _catalogue_entry_schema, system=SYSTEM, resource="location")


def iter_container_pages(target: ConnectionTarget) -> Generator[list[dict], None, int]:
    """Yield every container of the site, whatever its status, one page of canonical records
    at a time (bounded memory: one native page); return how many records were skipped as
    unmappable, for a caller that reports it (``yield from``, or ``StopIteration.value``)."""
    skipped = 0
    for items in _native_pages(target, ("containers",), {}):
        page = map_records(items, lambda item: _container(target, item), _container_schema,
                           system=SYSTEM, resource="container")
        skipped += len(items) - len(page)
        if page:
            yield page
    return skipped


def _container_movement(target: ConnectionTarget, native: dict) -> dict:
    container_id = native["containerId"]
    if not isinstance(container_id, str) or not container_id:
        raise TypeError("a movement names its container")
    return _movement(target, native)


def _movements_with_containers(target: ConnectionTarget, items: list) -> list[tuple[str, dict]]:
    pairs = []
    for native in items:
        mapped = map_records([native], lambda item: _container_movement(target, item),
                             _movement_schema, system=SYSTEM, resource="movement")
        if mapped:
            pairs.append((native["containerId"], mapped[0]))
    return pairs


def iter_movement_pages(target: ConnectionTarget, since: datetime | None
                        ) -> Generator[list[tuple[str, dict]], None, int]:
    """Yield the site's movements at or after ``since`` (all of them when None) in time order,
    one page of (container id, canonical movement) pairs at a time; return how many records
    were skipped as unmappable, as ``iter_container_pages`` does."""
    skipped = 0
    for items in _native_pages(target, ("movements",),
                               {"since": format_utc(since)} if since is not None else {}):
        page = _movements_with_containers(target, items)
        skipped += len(items) - len(page)
        if page:
            yield page
    return skipped


# --- change feed: GET /movements/changes (afterSequence, recordedSince, limit) ----------------
# The native contract this connector relies on: every movement scanned is appended to the
# site's feed under a ``sequence`` that only grows and is never reused, visible in sequence
# order (the system serializes its writers); a page is the movements after ``afterSequence`` in
# that order, and ``headSequence`` is the feed's latest position. The hub's watermark is the
# last sequence it has published, as text.

def _feed(target: ConnectionTarget, params: dict) -> dict:
    return _get(target, ("movements", "changes"), params)


def movement_feed_head(target: ConnectionTarget) -> str:
    """The watermark of "now": the feed's latest position (nothing before it is read)."""
    return str(int(_feed(target, {"limit": 0})["headSequence"]))


def movement_feed_position_at(target: ConnectionTarget, moment: datetime) -> str:
    """The watermark from which reading returns every movement scanned at or after
    ``moment`` (for a backfill)."""
    answer = _feed(target, {"recordedSince": format_utc(moment), "limit": 1})
    items = answer.get("items") or []
    return str(int(items[0]["sequence"]) - 1 if items else int(answer["headSequence"]))


def _moved_container(target: ConnectionTarget, native: dict) -> dict:
    return {**_container(target, native["container"]), "movement": _movement(target, native)}


def movements_changed_since(target: ConnectionTarget, watermark: str, limit: int) -> ChangePage:
    """The movements scanned after ``watermark`` (at most ``limit``, in feed order) as
    canonical ``container.moved`` records (the container with the ``movement``), and the
    watermark after them."""
    position = int(watermark)
    answer = _feed(target, {"afterSequence": position, "limit": min(limit, NATIVE_PAGE_LIMIT)})
    items = answer.get("items") or []
    records = map_records(items, lambda item: _moved_container(target, item),
                          _container_moved_schema, system=SYSTEM, resource="movement")
    if items:
        position = int(items[-1]["sequence"])
    return ChangePage(records=records, watermark=str(position), skipped=len(items) - len(records),
                      more=position < int(answer["headSequence"]))


def health(target: ConnectionTarget) -> None:
    """Raise unless the system answers its location catalogue (the cheapest authenticated read)."""
    unit_codes(target)


CONNECTOR = Connector(
    name="inventory-rest", product="inventory", title="Medication inventory",
    transport="http-pull", options_schema=ConnectionOptionsSchema,
    capabilities={"container_origin": container_origin, "containers_on_hand": containers_on_hand,
                  "dispensed_barcodes": dispensed_barcodes,
                  "dispensed_by_medication": dispensed_by_medication, "unit_codes": unit_codes,
                  "location_catalogue": location_catalogue,
                  "iter_container_pages": iter_container_pages,
                  "iter_movement_pages": iter_movement_pages,
                  "movement_feed_head": movement_feed_head,
                  "movement_feed_position_at": movement_feed_position_at,
                  "movements_changed_since": movements_changed_since},
    events=("container.moved",), health=health)
