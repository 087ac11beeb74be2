"""Factories of the records and rows tests need: canonical records, audit records, and
database rows (tenants, clients, jobs, job units, dead letters, sync runs).

Canonical records are shaped like the demo hospitals' data and checked by the schemas.

Each factory returns what a connector hands on (``app.connectors.base.checked``): JSON-ready
canonical values (dates and times as ISO text) that the canonical schema validates without
errors. Override any field by name, and a nested field with a double underscore (a ``date``
override is written as ISO text)::

    canonical_administration(patient__birth_date=date(1936, 3, 1), note=None)

Every identifier is synthetic, in the demo systems' formats (``NGH-A000004711``, ``MRN48213377``,
``RN20481``, barcodes ``30…``, the demo formulary's made-up NDCs), so tests that scan sinks for
PHI can seed these values and search for them.

Row factories add a row with working defaults to the session they are given and flush it, so it
has its id; the caller commits. Override any column by name::

    job = job_row(session, tenant_id=tenant.id, status="failed")
    job_unit_row(session, job, unit="ED-1", status="failed")
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime
from typing import Any

from marshmallow import Schema, ValidationError

from app.audit.records import AuditRecord
from app.canonical.schemas import AdministrationSchema, ContainerOriginSchema
from app.clients.models import Client
from app.clients.service import create_client
from app.jobs.models import DeadLetter, Job, JobUnit
from app.syncs.models import SyncRun
from app.tenants.models import Product, Tenant

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


# When the audit events audit_record makes happened, unless told otherwise.
AUDITED_AT = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def audit_record(**overrides: Any) -> AuditRecord:
    """An audit event of an authenticated lookup; override any field."""
    fields = {"request_id": uuid.uuid4().hex, "operation": "lookups.list_administrations",
              "outcome": "success", "status_code": 200, "occurred_at": AUDITED_AT,
              "tenant_id": str(uuid.uuid4()), "client_id": "north-general-emar",
              "resource_type": "administrations", "target_system": "administration",
              "latency_ms": 12}
    return AuditRecord(**{**fields, **overrides})


def _added(session, row):
    session.add(row)
    session.flush()
    return row


def tenant_row(session, *, slug: str = "test", **overrides: Any) -> Tenant:
    """Add a tenant whose slug is ``slug`` plus a random suffix (tenants outlive tests)."""
    slug = f"{slug}-{uuid.uuid4().hex[:8]}"
    return _added(session, Tenant(**{"slug": slug, "name": f"Hospital {slug}", **overrides}))


def client_row(session, *, tenant: Tenant, scopes: list[str], client_id: str | None = None,
               product: Product | None = None) -> tuple[Client, str]:
    """Add a client of ``tenant`` with ``scopes`` through the clients service (which hashes its
    fresh secret); return it and the secret. The id defaults to the tenant's slug plus a
    random suffix."""
    return create_client(db_session=session, tenant=tenant, product=product, scopes=scopes,
                         client_id=client_id or f"{tenant.slug}-{uuid.uuid4().hex[:8]}")


def job_row(session, *, tenant_id: uuid.UUID, **overrides: Any) -> Job:
    """Add a finished one-unit administration_counts job of the tenant."""
    fields = {"type": "administration_counts", "status": "succeeded",
              "params": {"window": {"since": "2026-11-01T00:00:00Z",
                                    "until": "2026-11-02T00:00:00Z"},
                         "group_by": ["unit", "medication"]},
              "idempotency_key": f"factory-{uuid.uuid4()}", "units_total": 1, "units_done": 1}
    return _added(session, Job(**{**fields, "tenant_id": tenant_id, **overrides}))


def job_unit_row(session, job: Job, **overrides: Any) -> JobUnit:
    """Add a unit (ICU-1, done) of ``job``."""
    return _added(session, JobUnit(**{"unit": "ICU-1", "status": "done", "job_id": job.id,
                                      **overrides}))


def dead_letter_row(session, job: Job, **overrides: Any) -> DeadLetter:
    """Add an open dead letter of a unit of ``job`` (ICU-1) that exhausted its retries."""
    fields = {"task_name": "hub.io.run_job_unit", "unit": "ICU-1", "attempts": 4,
              "error": "DownstreamUnavailable", "status": "open"}
    return _added(session, DeadLetter(**{**fields, "tenant_id": job.tenant_id, "job_id": job.id,
                                         **overrides}))


def sync_run_row(session, *, schedule_id: uuid.UUID, started_at: datetime,
                 **overrides: Any) -> SyncRun:
    """Add a finished, succeeded run of the sync ``schedule_id`` that started at
    ``started_at``."""
    fields = {"outcome": "succeeded", "finished_at": started_at}
    return _added(session, SyncRun(**{**fields, "schedule_id": schedule_id,
                                      "started_at": started_at, **overrides}))
