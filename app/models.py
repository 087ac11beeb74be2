"""Every table of the hub, imported in one place for Alembic and the test fixtures."""

from app.audit.models import AuditEvent
from app.clients.models import Client
from app.database import Base
from app.events.models import Delivery, Event, Subscription
from app.jobs.models import DeadLetter, Job, JobResult, JobUnit, OutboxMessage
from app.parallel_runs.models import ParallelRun, ParallelRunDifference
from app.pharmacy.models import Hl7Message, PharmacyAdministration, PharmacyDispense, PharmacyOrder
from app.snapshots.models import SnapshotContainer, SnapshotLocation, SnapshotMovement
from app.syncs.models import ChangeWatermark, SyncRun, SyncSchedule
from app.tenants.models import Connection, Entitlement, Product, Tenant

__all__ = ["AuditEvent", "Base", "ChangeWatermark", "Client", "Connection", "DeadLetter",
           "Delivery", "Entitlement", "Event", "Hl7Message", "Job", "JobResult", "JobUnit",
           "OutboxMessage", "ParallelRun", "ParallelRunDifference", "PharmacyAdministration",
           "PharmacyDispense", "PharmacyOrder", "Product", "SnapshotContainer", "SnapshotLocation",
           "SnapshotMovement", "Subscription",
           "SyncRun", "SyncSchedule", "Tenant"]
