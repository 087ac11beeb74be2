"""Sync schedules (per tenant and hub-wide) and the record of their runs.

Revision ID: 0005_sync_schedules
Revises: 0004_inventory_snapshot
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_sync_schedules"
down_revision: str | Sequence[str] | None = "0004_inventory_snapshot"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("schedule", sa.String(length=100), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("skipped_runs", sa.Integer(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_sync_schedules_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_schedules")),
        sa.UniqueConstraint("kind", "scope", name=op.f("uq_sync_schedules_kind")),
    )
    with op.batch_alter_table("sync_schedules") as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_schedules_tenant_id"), ["tenant_id"],
                              unique=False)
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["schedule_id"], ["sync_schedules.id"],
                                name=op.f("fk_sync_runs_schedule_id_sync_schedules"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    with op.batch_alter_table("sync_runs") as batch_op:
        batch_op.create_index("ix_sync_runs_schedule_started", ["schedule_id", "started_at"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_sync_runs_started_at"), ["started_at"],
                              unique=False)


def downgrade() -> None:
    op.drop_table("sync_runs")
    op.drop_table("sync_schedules")
