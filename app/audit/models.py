"""Table of audit events. Rows carry who and what, never patient identifiers."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.database import Base, utcnow


class AuditEvent(Base):
    """One audited operation.

    ``row_hash`` chains each row to the previous one (``prev_hash``), so a deleted or edited row
    breaks the chain and shows (app.audit.chain). Migration 0002 adds database triggers that
    refuse UPDATE (and, on PostgreSQL, DELETE outside the retention purge); a later SQLite batch
    migration that recreates this table drops them and must create them again.
    """

    __tablename__ = "audit_events"

    # BigInteger on PostgreSQL, INTEGER on SQLite (only INTEGER PRIMARY KEY autoincrements there).
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    # Made where the request was handled: a drainer that stores an event twice (after a crash
    # between commit and trimming the queue) finds it by this id and skips it.
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    client_id: Mapped[str | None] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str | None] = mapped_column(String(64))
    target_system: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64), unique=True)
