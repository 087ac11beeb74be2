"""Change watermarks: how far each tenant's change feed of each system has been published.

Revision ID: 0009_change_watermarks
Revises: 0008_parallel_runs
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_change_watermarks"
down_revision: str | Sequence[str] | None = "0008_parallel_runs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "change_watermarks",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("product", sa.String(length=32), nullable=False),
        sa.Column("feed", sa.String(length=64), nullable=False),
        sa.Column("position", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_change_watermarks_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "product", "feed",
                                name=op.f("pk_change_watermarks")),
    )


def downgrade() -> None:
    op.drop_table("change_watermarks")
