"""Job units: each hospital unit's share of a job, with its partial aggregate.

Revision ID: 0003_job_units
Revises: 0002_audit_append_only
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_job_units"
down_revision: str | Sequence[str] | None = "0002_audit_append_only"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_units",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("unit", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("partial", sa.JSON(), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_units_job_id_jobs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_units")),
        sa.UniqueConstraint("job_id", "unit", name=op.f("uq_job_units_job_id")),
    )
    with op.batch_alter_table("job_units") as batch_op:
        batch_op.create_index(batch_op.f("ix_job_units_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_units") as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_units_job_id"))
    op.drop_table("job_units")
