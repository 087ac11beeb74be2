"""The jobs' transactional outbox: each task the hub promised to send, until the broker has it.

Revision ID: 0011_job_outbox
Revises: 0010_connection_connector
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_job_outbox"
down_revision: str | Sequence[str] | None = "0010_connection_connector"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_name", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("unit", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_outbox_job_id_jobs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_outbox")),
    )
    with op.batch_alter_table("job_outbox") as batch_op:
        batch_op.create_index(batch_op.f("ix_job_outbox_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_outbox_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_outbox") as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_outbox_sent_at"))
        batch_op.drop_index(batch_op.f("ix_job_outbox_job_id"))
    op.drop_table("job_outbox")
