"""Parallel runs (shadow mode) of lookups against legacy endpoints, and their differences.

Revision ID: 0008_parallel_runs
Revises: 0007_events_webhooks
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_parallel_runs"
down_revision: str | Sequence[str] | None = "0007_events_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "parallel_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("lookup", sa.String(length=64), nullable=False),
        sa.Column("legacy_base_url", sa.String(length=500), nullable=False),
        sa.Column("legacy_credential_ref", sa.String(length=200), nullable=False),
        sa.Column("legacy_timezone", sa.String(length=64), nullable=False),
        sa.Column("sample_rate", sa.Float(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("comparisons", sa.Integer(), nullable=False),
        sa.Column("matches", sa.Integer(), nullable=False),
        sa.Column("mismatches", sa.Integer(), nullable=False),
        sa.Column("legacy_errors", sa.Integer(), nullable=False),
        sa.Column("last_legacy_error", sa.String(length=32), nullable=True),
        sa.Column("last_compared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_parallel_runs_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parallel_runs")),
        sa.UniqueConstraint("tenant_id", "lookup", name=op.f("uq_parallel_runs_tenant_id")),
    )
    op.create_table(
        "parallel_run_differences",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("parallel_run_id", sa.Uuid(), nullable=False),
        sa.Column("comparison_id", sa.Uuid(), nullable=False),
        sa.Column("compared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("hub_value", sa.String(length=64), nullable=True),
        sa.Column("legacy_value", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["parallel_run_id"], ["parallel_runs.id"],
                                name=op.f("fk_parallel_run_differences_parallel_run_id_"
                                          "parallel_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parallel_run_differences")),
    )
    with op.batch_alter_table("parallel_run_differences") as batch_op:
        batch_op.create_index("ix_parallel_run_differences_run_compared",
                              ["parallel_run_id", "compared_at"], unique=False)


def downgrade() -> None:
    op.drop_table("parallel_run_differences")
    op.drop_table("parallel_runs")
