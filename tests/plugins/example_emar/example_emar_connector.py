"""Connector of the Example eMAR: another vendor's medication administration system.

Its native shape differs from the hub's own eMAR connector in every way a real second vendor
would: camelCase under ``records``, wards as ``"4 WEST"``-style names mapped by the tenant's
code map, NDC-10 with dashes, local times without an offset, page-number paging and a bearer
token. Everything the hub needs from it is declared in ``CONNECTOR`` below; the hub finds it
through the ``medication_hub.connectors`` entry point of this package's pyproject.toml.
"""

from __future__ import annotations

from datetime import datetime

from marshmallow import fields

from app.canonical.ndc import normalize_ndc
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

NAME = "example-emar"
_schema = AdministrationSchema()


class ExampleEmarOptionsSchema(ConnectionOptionsSchema):
    """The Example eMAR needs to know which of its sites the tenant is."""

    site_code = fields.String(required=True)


def _get(target: ConnectionTarget, *path: str, params: dict) -> dict:
    return get_json(system=NAME, url=resource_url(target.base_url, *path),
                    params={**params, "site": target.options["site_code"]},
                    headers={"Authorization": f"Bearer {target.credential}"},
                    breaker=target.breaker, policy=target.policy)


def _administration(target: ConnectionTarget, native: dict) -> dict:
    return {
        "administration_id": native["recordId"],
        "unit": canonical_unit(native["wardName"], target.unit_codes),
        "medication": {"ndc11": normalize_ndc(native["drugNdc"]), "name": native["drugName"]},
        "dose": {"quantity": native["amount"], "unit": native["amountUnit"]},
        "route": native["routeCode"],
        "administered_at": format_utc(to_utc(native["givenLocal"], target.timezone)),
        "container_barcode": native.get("packageBarcode"),
        "nurse_id": native["staffId"],
        "patient": {"mrn": native["patientMrn"], "name": native["patientName"],
                    "birth_date": native["patientDob"]},
        "note": native.get("comment"),
    }


def administrations_page(target: ConnectionTarget, *, unit: str | None, ndc11: str | None,
                         since: datetime | None, until: datetime | None,
                         native_cursor: str | None, page_size: int
                         ) -> tuple[list[dict], str | None]:
    """Return one page of canonical administrations and the next page's number."""
    params: dict = {"page": native_cursor or "1", "size": min(page_size, 200)}
    if unit:
        params["ward"] = target.mapped_native_unit(unit) or unit
    if ndc11:
        params["ndc11"] = ndc11
    if since:
        params["from"] = format_utc(since)
    if until:
        params["to"] = format_utc(until)
    answer = _get(target, "records", params=params)
    records = map_records(answer.get("records", []), lambda item: _administration(target, item),
                          _schema, system=NAME, resource="administration")
    return records, answer.get("nextPage")


def iter_administrations(target: ConnectionTarget, *, unit: str | None, ndc11: str | None,
                         since: datetime, until: datetime):
    """Yield every canonical administration matching the filters, a page at a time."""
    page = None
    while True:
        records, page = administrations_page(target, unit=unit, ndc11=ndc11, since=since,
                                             until=until, native_cursor=page, page_size=200)
        yield from records
        if not page:
            return


def unit_codes(target: ConnectionTarget) -> list[str]:
    """Return the canonical codes of the site's wards."""
    answer = _get(target, "wards", params={})
    return sorted(canonical_unit(name, target.unit_codes) for name in answer.get("wards", []))


def administration_feed_head(target: ConnectionTarget) -> str:
    """The position of the system's change feed now."""
    return str(_get(target, "changes", params={"after": 0, "size": 0})["head"])


def administration_feed_position_at(target: ConnectionTarget, moment: datetime) -> str:
    """This system cannot look up a position by time: a backfill starts at its beginning."""
    return "0"


def administrations_changed_since(target: ConnectionTarget, watermark: str, limit: int
                                  ) -> ChangePage:
    """The doses charted after ``watermark`` (the feed's ``seq``), as canonical records."""
    answer = _get(target, "changes", params={"after": watermark, "size": min(limit, 200)})
    entries = answer.get("entries", [])
    records = map_records([entry["record"] for entry in entries],
                          lambda item: _administration(target, item), _schema, system=NAME,
                          resource="administration")
    position = str(entries[-1]["seq"]) if entries else watermark
    return ChangePage(records=records, watermark=position,
                      skipped=len(entries) - len(records), more=int(position) < answer["head"])


def health(target: ConnectionTarget) -> None:
    """Raise unless the system answers its ward list."""
    unit_codes(target)


CONNECTOR = Connector(
    name=NAME, product="administration", title="Example eMAR", transport="http-pull",
    options_schema=ExampleEmarOptionsSchema,
    capabilities={"administrations_page": administrations_page,
                  "iter_administrations": iter_administrations, "unit_codes": unit_codes,
                  "administration_feed_head": administration_feed_head,
                  "administration_feed_position_at": administration_feed_position_at,
                  "administrations_changed_since": administrations_changed_since},
    events=("administration.recorded",), health=health)
