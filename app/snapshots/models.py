"""Tables of the inventory snapshot. None of them holds PHI: System A knows places, containers
and their movements, never patients."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.database import Base, new_id, utcnow


class SnapshotLocation(Base):
    """One place of a tenant's location catalogue: its pharmacy, a unit, or a unit's cabinet."""

    __tablename__ = "snapshot_locations"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                                 index=True)
    code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    # The unit a cabinet hangs on; None for the pharmacy and the units.
    parent: Mapped[str | None] = mapped_column(String(64))
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class SnapshotContainer(Base):
    """A container as System A last described it (the canonical record), with the columns the
    on-hand fallback filters on."""

    __tablename__ = "snapshot_containers"
    __table_args__ = (UniqueConstraint("tenant_id", "container_id"),
                      Index("ix_snapshot_containers_tenant_id_unit", "tenant_id", "unit"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    container_id: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str | None] = mapped_column(String(64))
    ndc11: Mapped[str] = mapped_column(String(11))
    status: Mapped[str] = mapped_column(String(16))
    record: Mapped[dict] = mapped_column(JSON)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class SnapshotMovement(Base):
    """One movement of a container (canonical record). Movements never change, so a sync only
    adds the ones it has not stored yet."""

    __tablename__ = "snapshot_movements"
    __table_args__ = (UniqueConstraint("tenant_id", "movement_id"),
                      Index("ix_snapshot_movements_tenant_id_container_id", "tenant_id",
                            "container_id"),
                      # The next sync asks System A for movements after the latest one stored.
                      Index("ix_snapshot_movements_tenant_id_at", "tenant_id", "at"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    movement_id: Mapped[str] = mapped_column(String(64))
    container_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column()
    record: Mapped[dict] = mapped_column(JSON)
