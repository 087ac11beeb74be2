"""Tables of sync schedules and their runs. Neither holds PHI: ids, counts, outcomes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.database import Base, new_id, utcnow

HUB_SCOPE = "hub"


class SyncSchedule(Base):
    """One sync for one tenant (or for the whole hub), as operators configured it.

    ``schedule`` is an override (a spec, see ``app.syncs.specs``); NULL follows the default
    from the settings, so changing a default reaches every tenant that did not override it.
    """

    __tablename__ = "sync_schedules"
    # scope is the tenant id as text, or "hub": a unique key (NULL tenant ids would not be).
    __table_args__ = (UniqueConstraint("kind", "scope"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    schedule: Mapped[str | None] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Runs that found the previous run still going, since the schedule was created.
    skipped_runs: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class SyncRun(Base):
    """One run of a schedule: running, then succeeded or failed (or skipped, never started)."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_schedule_started", "schedule_id", "started_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    schedule_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sync_schedules.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column()
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    # Counts and ids only (checked PHI-free before it is stored).
    report: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    # A PHI-free sentence (never a downstream payload or exception text).
    error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(64))


class ChangeWatermark(Base):
    """How far the hub has published one tenant's change feed of one system.

    ``position`` is the connector's watermark, opaque to the hub (for the demo systems the last
    published feed sequence). It is written in the same transaction as the events published
    from the records before it, so it never runs ahead of them nor lags behind them. Its own
    table rather than a column of ``sync_schedules``: a schedule says when to read, a watermark
    where the feed is; operators change and reset schedules, and a watermark must survive that.
    """

    __tablename__ = "change_watermarks"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    product: Mapped[str] = mapped_column(String(32), primary_key=True)
    feed: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[str] = mapped_column(String(200))
    # When the hub started reading this feed (its first run: nothing older is published).
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
