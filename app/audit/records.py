"""One audit event as it travels: made after a request, queued in Redis as JSON, hashed into the
chain and shown to admins.

The fields are fixed here and nowhere else: who (tenant, client), what (operation, resource type,
target system), how it ended (outcome, status, latency) and the request id. Nothing from the
request itself — no path parameters, query strings, bodies or headers — so an event cannot carry
patient identifiers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from app.audit.models import AuditEvent

OUTCOMES = ("success", "denied", "rejected", "error")


def outcome_for(status_code: int) -> str:
    """Return the outcome of a response status: success, denied, rejected or error."""
    if status_code >= 500:
        return "error"
    if status_code in (401, 403):
        return "denied"
    if status_code >= 400:
        return "rejected"
    return "success"


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands timestamps back without an offset; the hub stores them in UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class AuditRecord:
    """The fields of one audit event."""

    request_id: str
    operation: str
    outcome: str
    status_code: int | None
    occurred_at: datetime
    tenant_id: str | None = None
    client_id: str | None = None
    resource_type: str | None = None
    target_system: str | None = None
    latency_ms: int | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        # One spelling of every value, so the same event hashes the same on every database.
        object.__setattr__(self, "occurred_at", _as_utc(self.occurred_at))
        object.__setattr__(self, "event_id", str(uuid.UUID(str(self.event_id))))
        if self.tenant_id is not None:
            object.__setattr__(self, "tenant_id", str(uuid.UUID(str(self.tenant_id))))

    def to_dict(self) -> dict:
        """Return the fields as JSON-ready values (timestamps as ISO 8601 UTC, microseconds)."""
        values = asdict(self)
        values["occurred_at"] = self.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return values

    def to_json(self) -> str:
        """Return the canonical JSON of the event: sorted keys, no spaces, ASCII only."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str) -> AuditRecord:
        """Read an event written by ``to_json``."""
        values = json.loads(text)
        values["occurred_at"] = datetime.fromisoformat(values["occurred_at"])
        return cls(**values)

    @classmethod
    def from_row(cls, row: AuditEvent) -> AuditRecord:
        """Return the fields of a stored event."""
        return cls(event_id=str(row.event_id), occurred_at=row.occurred_at,
                   request_id=row.request_id,
                   tenant_id=str(row.tenant_id) if row.tenant_id else None,
                   client_id=row.client_id, operation=row.operation,
                   resource_type=row.resource_type, target_system=row.target_system,
                   outcome=row.outcome, status_code=row.status_code, latency_ms=row.latency_ms)

    def to_row(self, *, prev_hash: str, row_hash: str) -> AuditEvent:
        """Return a new table row of this event, linked into the chain."""
        return AuditEvent(event_id=uuid.UUID(self.event_id), occurred_at=self.occurred_at,
                          request_id=self.request_id,
                          tenant_id=uuid.UUID(self.tenant_id) if self.tenant_id else None,
                          client_id=self.client_id, operation=self.operation,
                          resource_type=self.resource_type, target_system=self.target_system,
                          outcome=self.outcome, status_code=self.status_code,
                          latency_ms=self.latency_ms, prev_hash=prev_hash, row_hash=row_hash)
