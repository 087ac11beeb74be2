"""Connector of medication administration systems (System B, the eMAR).

Native shape: snake_case, ``med.ndc11`` (11 digits), wards like ``ICU3``, UTC times, opaque
cursor paging, ``Authorization: ApiKey`` authentication. Its records carry PHI (patient name,
MRN, birth date, notes): they exist only in memory here, and the PHI policy cuts them down
before anything is cached, stored or returned.
"""

from __future__ import annotations

from datetime import datetime

from app.canonical.schemas import AdministrationSchema
from app.canonical.times import format_utc, to_utc
from app.canonical.units import canonical_unit
from app.connectors.base import (
    ChangePage,
    ConnectionOptionsSchema,
    ConnectionTarget,
    map_records,
    resource_url,
)
from app.connectors.registry import Connector
from app.connectors.resilience import get_json

SYSTEM = "administration"
NATIVE_MAX_PAGE = 1000
_schema = AdministrationSchema()


def _native_ward(target: ConnectionTarget, unit: str) -> str:
    # Without a mapping, this system drops the dash: ICU-3 → ICU3.
    return target.mapped_native_unit(unit) or unit.replace("-", "")


def _administration(target: ConnectionTarget, native: dict) -> dict:
    patient = native["patient"]
    return {
        "administration_id": native["admin_id"],
        "unit": canonical_unit(native["ward"], target.unit_codes),
        "medication": {"ndc11": native["med"]["ndc11"], "name": native["med"]["description"]},
        "dose": {"quantity": native["dose"]["qty"], "unit": native["dose"]["uom"]},
        "route": native["route"],
        "administered_at": format_utc(to_utc(native["given_at"], target.timezone)),
        "container_barcode": native.get("container_barcode"),
        "nurse_id": native["nurse_id"],
        "patient": {"mrn": patient["mrn"], "name": patient["full_name"],
                    "birth_date": patient["birth_date"]},
        "note": native.get("note"),
    }


def administrations_page(target: ConnectionTarget, *, unit: str | None, ndc11: str | None,
                         since: datetime | None, until: datetime | None,
                         native_cursor: str | None, page_size: int
                         ) -> tuple[list[dict], str | None]:
    """Return one page of canonical administrations and the native cursor of the next page."""
    params: dict = {"page_size": min(page_size, NATIVE_MAX_PAGE)}
    if unit:
        params["ward"] = _native_ward(target, unit)
    if ndc11:
        params["ndc11"] = ndc11
    if since:
        params["since"] = format_utc(since)
    if until:
        params["until"] = format_utc(until)
    if native_cursor:
        params["cursor"] = native_cursor
    answer = get_json(system=SYSTEM, url=resource_url(target.base_url, "administrations"), params=params,
                      headers={"Authorization": f"ApiKey {target.credential}"},
                      breaker=target.breaker, policy=target.policy)
    records = map_records(answer.get("data", []), lambda item: _administration(target, item),
                          _schema, system=SYSTEM, resource="administration")
    return records, answer.get("next_cursor")


def iter_administrations(target: ConnectionTarget, *, unit: str | None, ndc11: str | None,
                         since: datetime, until: datetime):
    """Yield every canonical administration matching the filters, one native page at a time:
    memory stays bounded by one page however many records there are."""
    cursor = None
    while True:
        records, cursor = administrations_page(target, unit=unit, ndc11=ndc11, since=since,
                                               until=until, native_cursor=cursor,
                                               page_size=NATIVE_MAX_PAGE)
        yield from records
        if not cursor:
            return


def unit_codes(target: ConnectionTarget) -> list[str]:
    """Return the canonical codes of the facility's wards."""
    answer = get_json(system=SYSTEM, url=resource_url(target.base_url, "wards"), params={},
                      headers={"Authorization": f"ApiKey {target.credential}"},
                      breaker=target.breaker, policy=target.policy)
    return sorted(canonical_unit(ward["ward"], target.unit_codes)
                  for ward in answer.get("data", []))


# --- change feed: GET /administrations/changes (after_sequence, recorded_since, page_size) ---
# The native contract this connector relies on: every dose charted is appended to the
# facility's feed under a ``sequence`` that only grows and is never reused, visible in sequence
# order; a late-charted dose (given hours ago, charted now) gets a position now, so a watermark
# on the feed misses nothing, where one on ``given_at`` would. ``head_sequence`` is the feed's
# latest position. The hub's watermark is the last sequence it has published, as text.

def _feed(target: ConnectionTarget, params: dict) -> dict:
    return get_json(system=SYSTEM, url=resource_url(target.base_url, "administrations", "changes"),
                    params=params, headers={"Authorization": f"ApiKey {target.credential}"},
                    breaker=target.breaker, policy=target.policy)


def administration_feed_head(target: ConnectionTarget) -> str:
    """The watermark of "now": the feed's latest position (nothing before it is read)."""
    return str(int(_feed(target, {"page_size": 0})["head_sequence"]))


def administration_feed_position_at(target: ConnectionTarget, moment: datetime) -> str:
    """The watermark from which reading returns every dose charted at or after ``moment``
    (for a backfill)."""
    answer = _feed(target, {"recorded_since": format_utc(moment), "page_size": 1})
    data = answer.get("data") or []
    return str(int(data[0]["sequence"]) - 1 if data else int(answer["head_sequence"]))


def administrations_changed_since(target: ConnectionTarget, watermark: str, limit: int
                                  ) -> ChangePage:
    """The doses charted after ``watermark`` (at most ``limit``, in feed order) as canonical
    administrations, PHI included (the publisher minimizes it), and the watermark after them."""
    position = int(watermark)
    answer = _feed(target, {"after_sequence": position, "page_size": min(limit, NATIVE_MAX_PAGE)})
    data = answer.get("data") or []
    records = map_records(data, lambda item: _administration(target, item), _schema,
                          system=SYSTEM, resource="administration")
    if data:
        position = int(data[-1]["sequence"])
    return ChangePage(records=records, watermark=str(position), skipped=len(data) - len(records),
                      more=position < int(answer["head_sequence"]))


def health(target: ConnectionTarget) -> None:
    """Raise unless the system answers its ward list (the cheapest authenticated read)."""
    unit_codes(target)


CONNECTOR = Connector(
    name="emar-rest", product="administration", title="Medication administration (eMAR)",
    transport="http-pull", options_schema=ConnectionOptionsSchema,
    capabilities={"administrations_page": administrations_page,
                  "iter_administrations": iter_administrations, "unit_codes": unit_codes,
                  "administration_feed_head": administration_feed_head,
                  "administration_feed_position_at": administration_feed_position_at,
                  "administrations_changed_since": administrations_changed_since},
    events=("administration.recorded",), health=health)
