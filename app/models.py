"""Every table of the hub, imported in one place for Alembic and the test fixtures."""

from app.audit.models import AuditEvent
from app.clients.models import Client
from app.database import Base
from app.jobs.models import DeadLetter, Job, JobResult, JobUnit
from app.pharmacy.models import Hl7Message, PharmacyAdministration, PharmacyDispense, PharmacyOrder
from app.snapshots.models import SnapshotContainer, SnapshotLocation, SnapshotMovement
from app.syncs.models import SyncRun, SyncSchedule
from app.tenants.models import Connection, Entitlement, Product, Tenant

__all__ = ["AuditEvent", "Base", "Client", "Connection", "DeadLetter", "Entitlement",
           "Hl7Message", "Job", "JobResult", "JobUnit", "PharmacyAdministration",
           "PharmacyDispense", "PharmacyOrder", "Product", "SnapshotContainer",
           "SnapshotLocation", "SnapshotMovement", "SyncRun", "SyncSchedule", "Tenant"]
