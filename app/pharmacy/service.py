"""The pharmacy's data in the hub: HL7 v2 messages received, and what the stored ones carried.

Reads for other parts of the hub (reconciliation, events) go through :func:`dispensed_totals`
and :func:`iter_dispenses`; they return pseudonymized records only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.canonical.times import format_utc, to_utc
from app.pharmacy.models import PharmacyDispense

ITER_BATCH = 1000


def _dispense_window(*, tenant_id: uuid.UUID, unit: str | None, since: datetime,
                     until: datetime):
    # Stored times are UTC; SQLite compares them as text, so the window is UTC too.
    conditions = [PharmacyDispense.tenant_id == tenant_id,
                  PharmacyDispense.dispensed_at >= to_utc(since),
                  PharmacyDispense.dispensed_at < to_utc(until)]
    if unit is not None:
        conditions.append(PharmacyDispense.unit == unit)
    return conditions


def dispensed_totals(*, db_session: Session, tenant_id: uuid.UUID, unit: str | None,
                     since: datetime, until: datetime) -> dict[tuple[str, str], dict]:
    """Return what the pharmacy dispensed in ``[since, until)``, per (unit, NDC-11):
    ``{"dispenses": n, "quantity": total, "dose_unit": unit}`` (all units when ``unit`` is None).

    A medication dispensed in two dose units (rare, a sender's mistake) keeps the one most
    dispenses used; quantities in another unit are not added to it."""
    rows = db_session.execute(
        select(PharmacyDispense.unit, PharmacyDispense.ndc11, PharmacyDispense.dose_unit,
               func.count(), func.sum(PharmacyDispense.quantity))
        .where(*_dispense_window(tenant_id=tenant_id, unit=unit, since=since, until=until))
        .group_by(PharmacyDispense.unit, PharmacyDispense.ndc11, PharmacyDispense.dose_unit))
    totals: dict[tuple[str, str], dict] = {}
    for row_unit, ndc11, dose_unit, count, quantity in rows:
        known = totals.get((row_unit, ndc11))
        if known is None or count > known["dispenses"]:
            totals[(row_unit, ndc11)] = {"dispenses": int(count), "quantity": float(quantity or 0),
                                         "dose_unit": dose_unit}
    return totals


def dispense_record(row: PharmacyDispense) -> dict:
    """Return a stored dispense as a canonical, pseudonymized record (what consumers see)."""
    return {
        "dispense_id": row.dispense_id,
        "order_number": row.order_number,
        "unit": row.unit,
        "medication": {"ndc11": row.ndc11, "name": row.medication_name},
        "dose": {"quantity": row.quantity, "unit": row.dose_unit},
        "route": row.route,
        "dispensed_at": format_utc(to_utc(row.dispensed_at)),
        "container_barcode": row.container_barcode,
        "patient": {"ref": row.patient_pseudonym},
    }


def iter_dispenses(*, db_session: Session, tenant_id: uuid.UUID, unit: str | None,
                   since: datetime, until: datetime) -> Iterator[dict]:
    """Yield the tenant's dispenses in ``[since, until)``, oldest first, as canonical
    pseudonymized records (:func:`dispense_record`), reading a batch of rows at a time."""
    query = (select(PharmacyDispense)
             .where(*_dispense_window(tenant_id=tenant_id, unit=unit, since=since, until=until))
             .order_by(PharmacyDispense.dispensed_at, PharmacyDispense.id)
             .execution_options(yield_per=ITER_BATCH))
    for row in db_session.scalars(query):
        yield dispense_record(row)
