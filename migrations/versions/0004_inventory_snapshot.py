"""Inventory snapshot: each tenant's System A location catalogue, containers and movements.

Revision ID: 0004_inventory_snapshot
Revises: 0003_job_units
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_inventory_snapshot"
down_revision: str | Sequence[str] | None = "0003_job_units"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "snapshot_locations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("parent", sa.String(length=64), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_snapshot_locations_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshot_locations")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_snapshot_locations_tenant_id")),
    )
    with op.batch_alter_table("snapshot_locations") as batch_op:
        batch_op.create_index(batch_op.f("ix_snapshot_locations_tenant_id"), ["tenant_id"],
                              unique=False)

    op.create_table(
        "snapshot_containers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("container_id", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=64), nullable=True),
        sa.Column("ndc11", sa.String(length=11), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_snapshot_containers_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshot_containers")),
        sa.UniqueConstraint("tenant_id", "container_id",
                            name=op.f("uq_snapshot_containers_tenant_id")),
    )
    with op.batch_alter_table("snapshot_containers") as batch_op:
        batch_op.create_index("ix_snapshot_containers_tenant_id_unit", ["tenant_id", "unit"],
                              unique=False)

    op.create_table(
        "snapshot_movements",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("movement_id", sa.String(length=64), nullable=False),
        sa.Column("container_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_snapshot_movements_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshot_movements")),
        sa.UniqueConstraint("tenant_id", "movement_id",
                            name=op.f("uq_snapshot_movements_tenant_id")),
    )
    with op.batch_alter_table("snapshot_movements") as batch_op:
        batch_op.create_index("ix_snapshot_movements_tenant_id_container_id",
                              ["tenant_id", "container_id"], unique=False)
        batch_op.create_index("ix_snapshot_movements_tenant_id_at", ["tenant_id", "at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("snapshot_movements") as batch_op:
        batch_op.drop_index("ix_snapshot_movements_tenant_id_at")
        batch_op.drop_index("ix_snapshot_movements_tenant_id_container_id")
    op.drop_table("snapshot_movements")
    with op.batch_alter_table("snapshot_containers") as batch_op:
        batch_op.drop_index("ix_snapshot_containers_tenant_id_unit")
    op.drop_table("snapshot_containers")
    with op.batch_alter_table("snapshot_locations") as batch_op:
        batch_op.drop_index(batch_op.f("ix_snapshot_locations_tenant_id"))
    op.drop_table("snapshot_locations")
