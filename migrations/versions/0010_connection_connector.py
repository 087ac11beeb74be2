"""Connections name the connector that talks to the tenant's system.

Existing connections keep the hub's own connector of their product (left NULL: the product's
built-in connector answers); a plug-in's connector is named explicitly.

Revision ID: 0010_connection_connector
Revises: 0009_change_watermarks
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_connection_connector"
down_revision: str | Sequence[str] | None = "0009_change_watermarks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("connector", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("connector")
