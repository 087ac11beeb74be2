"""The work of one hospital unit within a job: stream the unit's records from the hospital
systems and reduce them to a small, de-identified partial aggregate.

Raw records (with PHI, from the administration system) exist only inside these functions, one
page at a time; what leaves is counts and dose totals keyed by unit, medication and hour.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from app.connectors.base import ConnectionTarget
from app.pharmacy.service import dispensed_totals


def _hour(administered_at: str) -> str:
    return administered_at[:13] + ":00:00Z"


def count_unit_administrations(administration: ConnectionTarget, *, unit: str, since: datetime,
                               until: datetime, ndc11: str | None, group_by: list[str]) -> dict:
    """Count the unit's administrations (and total their doses) by the requested groups."""
    groups: dict[tuple, dict] = {}
    records = 0
    for record in administration.call(
            "iter_administrations", unit=unit, ndc11=ndc11, since=since, until=until):
        records += 1
        key = (record["unit"] if "unit" in group_by else None,
               record["medication"]["ndc11"] if "medication" in group_by else None,
               _hour(record["administered_at"]) if "hour" in group_by else None,
               record["dose"]["unit"])
        group = groups.setdefault(key, {"count": 0, "dose_total": 0.0})
        group["count"] += 1
        group["dose_total"] += float(record["dose"]["quantity"])
    return {"unit": unit, "records": records, "groups": [
        {"unit": key[0], "medication": key[1], "hour": key[2], "dose_unit": key[3], **values}
        for key, values in sorted(groups.items(), key=lambda item: str(item[0]))]}


def reconcile_unit(inventory: ConnectionTarget, administration: ConnectionTarget, *, unit: str,
                   since: datetime, until: datetime) -> dict:
    """Compare containers dispensed to the unit with doses given from them (a diversion
    signal): matched doses, doses without a dispense record, containers never used."""
    dispensed = inventory.call("dispensed_barcodes", unit=unit, since=since,
                                                       until=until)
    used: set[str] = set()
    matched = without_dispense = 0
    for record in administration.call(
            "iter_administrations", unit=unit, ndc11=None, since=since, until=until):
        barcode = record.get("container_barcode")
        if barcode and barcode in dispensed:
            matched += 1
            used.add(barcode)
        else:
            without_dispense += 1
    return {"unit": unit, "dispensed": len(dispensed), "matched": matched,
            "administered_without_dispense": without_dispense,
            "dispensed_never_administered": len(dispensed - used)}


def reconcile_unit_dispensing(inventory: ConnectionTarget, administration: ConnectionTarget, *,
                              db_session: Session, tenant_id: uuid.UUID, unit: str,
                              since: datetime, until: datetime) -> dict:
    """Compare, per medication, what the pharmacy dispensed to the unit (System C, as the hub
    stored its HL7 dispenses), what the eMAR charted as given there (System B) and what left
    inventory for it (System A): the three-way diversion signal, as counts and quantities."""
    medications: dict[str, dict] = {}

    def medication(ndc11: str) -> dict:
        return medications.setdefault(ndc11, {
            "dose_unit": None, "pharmacy_dispenses": 0, "pharmacy_quantity": 0.0,
            "administrations": 0, "administered_quantity": 0.0, "inventory_dispenses": 0})

    for (_, ndc11), dispensed in dispensed_totals(db_session=db_session, tenant_id=tenant_id,
                                                  unit=unit, since=since, until=until).items():
        medication(ndc11).update(dose_unit=dispensed["dose_unit"],
                                 pharmacy_dispenses=dispensed["dispenses"],
                                 pharmacy_quantity=dispensed["quantity"])
    for record in administration.call(
            "iter_administrations", unit=unit, ndc11=None, since=since, until=until):
        entry = medication(record["medication"]["ndc11"])
        entry["administrations"] += 1
        entry["administered_quantity"] += float(record["dose"]["quantity"])
        entry["dose_unit"] = entry["dose_unit"] or record["dose"]["unit"]
    for ndc11, count in inventory.call(
            "dispensed_by_medication", unit=unit, since=since, until=until).items():
        medication(ndc11)["inventory_dispenses"] = count
    return {"unit": unit, "medications": [{"medication": ndc11, **values}
                                          for ndc11, values in sorted(medications.items())]}
