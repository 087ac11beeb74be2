"""Tables of parallel runs and the differences they found. Neither holds PHI: configuration,
counts, field paths, kinds of difference, and values only where the PHI policy keeps a field
unchanged and the value passed the boundary check (``app.parallel_runs.comparison``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.database import Base, new_id, utcnow


class ParallelRun(Base):
    """One tenant's lookup compared against its legacy endpoint, as operators configured it,
    with the running totals of its comparisons."""

    __tablename__ = "parallel_runs"
    __table_args__ = (UniqueConstraint("tenant_id", "lookup"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    lookup: Mapped[str] = mapped_column(String(64))
    legacy_base_url: Mapped[str] = mapped_column(String(500))
    # A reference (env:NAME or file:NAME), as for connections: never the credential itself.
    legacy_credential_ref: Mapped[str] = mapped_column(String(200))
    # The zone the legacy endpoint's offset-less local times are read in.
    legacy_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    sample_rate: Mapped[float] = mapped_column(Float, default=1.0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    comparisons: Mapped[int] = mapped_column(Integer, default=0)
    matches: Mapped[int] = mapped_column(Integer, default=0)
    mismatches: Mapped[int] = mapped_column(Integer, default=0)
    legacy_errors: Mapped[int] = mapped_column(Integer, default=0)
    # A kind (unavailable, not_found, rejected, unusable), never exception text.
    last_legacy_error: Mapped[str | None] = mapped_column(String(32))
    last_compared_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class ParallelRunDifference(Base):
    """One field that differed in one comparison. ``comparison_id`` groups the fields of one
    comparison; which record was compared is not kept (its id could be a patient's)."""

    __tablename__ = "parallel_run_differences"
    __table_args__ = (Index("ix_parallel_run_differences_run_compared", "parallel_run_id",
                            "compared_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    parallel_run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("parallel_runs.id", ondelete="CASCADE"))
    comparison_id: Mapped[uuid.UUID] = mapped_column()
    compared_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The exact path (movements[2].at) and its list-free form (movements[].at) to group by.
    path: Mapped[str] = mapped_column(String(200))
    field: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    hub_value: Mapped[str | None] = mapped_column(String(64))
    legacy_value: Mapped[str | None] = mapped_column(String(64))
