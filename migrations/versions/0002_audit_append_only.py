"""Audit events get a unique event id (drains skip events already stored) and become
append-only at the database: triggers refuse UPDATE; on PostgreSQL also DELETE and TRUNCATE,
except DELETE inside the retention purge (``hub.audit_retention_purge`` set for the
transaction). SQLite cannot tell a purge apart, so DELETE stays possible there; the hash chain
still shows a row missing from the middle.

SQLite batch migrations that recreate ``audit_events`` drop its triggers: a later revision that
alters this table in batch mode must create ``audit_events_no_update`` again.

Revision ID: 0002_audit_append_only
Revises: 0001_initial_schema
Create Date: 2026-11-24 10:20:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0002_audit_append_only'
down_revision: str | Sequence[str] | None = '0001_initial_schema'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRESQL_GUARD = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('hub.audit_retention_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$
"""
POSTGRESQL_TRIGGERS = (
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()",
)
SQLITE_TRIGGER = """
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused');
END
"""


def upgrade() -> None:
    """Upgrade schema."""
    # Nothing wrote audit events before this revision, so the NOT NULL column needs no backfill.
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_id', sa.Uuid(), nullable=False))
        batch_op.create_unique_constraint(batch_op.f('uq_audit_events_event_id'), ['event_id'])

    # Triggers after the batch operation: on SQLite it recreates the table, dropping triggers.
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        op.execute(POSTGRESQL_GUARD)
        for statement in POSTGRESQL_TRIGGERS:
            op.execute(statement)
    elif dialect == 'sqlite':
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    """Downgrade schema."""
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events')
        op.execute('DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events')
        op.execute('DROP FUNCTION IF EXISTS audit_events_append_only()')
    elif dialect == 'sqlite':
        op.execute('DROP TRIGGER IF EXISTS audit_events_no_update')

    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_audit_events_event_id'), type_='unique')
        batch_op.drop_column('event_id')
