"""The pharmacy's HL7 v2 receipt log (dedupe by sender and control id) and the orders,
dispenses and administrations its messages carried (pseudonymized, no raw message).

Revision ID: 0006_pharmacy_messages
Revises: 0005_sync_schedules
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_pharmacy_messages"
down_revision: str | Sequence[str] | None = "0005_sync_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('hl7_messages',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=True),
    sa.Column('sender_application', sa.String(length=64), nullable=False),
    sa.Column('sender_facility', sa.String(length=64), nullable=False),
    sa.Column('control_id', sa.String(length=64), nullable=False),
    sa.Column('message_type', sa.String(length=32), nullable=False),
    sa.Column('transport', sa.String(length=16), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ack_code', sa.String(length=2), nullable=False),
    sa.Column('error_code', sa.String(length=8), nullable=True),
    sa.Column('repeats', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_hl7_messages_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hl7_messages')),
    sa.UniqueConstraint('sender_application', 'sender_facility', 'control_id', name=op.f('uq_hl7_messages_sender_application'))
    )
    with op.batch_alter_table('hl7_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hl7_messages_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_hl7_messages_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('pharmacy_administrations',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('administration_id', sa.String(length=64), nullable=False),
    sa.Column('nurse_pseudonym', sa.String(length=64), nullable=True),
    sa.Column('administered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('order_number', sa.String(length=64), nullable=False),
    sa.Column('patient_pseudonym', sa.String(length=64), nullable=False),
    sa.Column('unit', sa.String(length=32), nullable=False),
    sa.Column('ndc11', sa.String(length=11), nullable=False),
    sa.Column('medication_name', sa.String(length=200), nullable=False),
    sa.Column('quantity', sa.Float(), nullable=False),
    sa.Column('dose_unit', sa.String(length=32), nullable=False),
    sa.Column('route', sa.String(length=32), nullable=True),
    sa.Column('container_barcode', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['hl7_messages.id'], name=op.f('fk_pharmacy_administrations_message_id_hl7_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_pharmacy_administrations_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pharmacy_administrations'))
    )
    with op.batch_alter_table('pharmacy_administrations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pharmacy_administrations_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_pharmacy_administrations_tenant_time', ['tenant_id', 'administered_at'], unique=False)

    op.create_table('pharmacy_dispenses',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('dispense_id', sa.String(length=64), nullable=False),
    sa.Column('dispensed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('order_number', sa.String(length=64), nullable=False),
    sa.Column('patient_pseudonym', sa.String(length=64), nullable=False),
    sa.Column('unit', sa.String(length=32), nullable=False),
    sa.Column('ndc11', sa.String(length=11), nullable=False),
    sa.Column('medication_name', sa.String(length=200), nullable=False),
    sa.Column('quantity', sa.Float(), nullable=False),
    sa.Column('dose_unit', sa.String(length=32), nullable=False),
    sa.Column('route', sa.String(length=32), nullable=True),
    sa.Column('container_barcode', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['hl7_messages.id'], name=op.f('fk_pharmacy_dispenses_message_id_hl7_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_pharmacy_dispenses_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pharmacy_dispenses'))
    )
    with op.batch_alter_table('pharmacy_dispenses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pharmacy_dispenses_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_pharmacy_dispenses_tenant_time', ['tenant_id', 'dispensed_at'], unique=False)

    op.create_table('pharmacy_orders',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('ordered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('order_number', sa.String(length=64), nullable=False),
    sa.Column('patient_pseudonym', sa.String(length=64), nullable=False),
    sa.Column('unit', sa.String(length=32), nullable=False),
    sa.Column('ndc11', sa.String(length=11), nullable=False),
    sa.Column('medication_name', sa.String(length=200), nullable=False),
    sa.Column('quantity', sa.Float(), nullable=False),
    sa.Column('dose_unit', sa.String(length=32), nullable=False),
    sa.Column('route', sa.String(length=32), nullable=True),
    sa.Column('container_barcode', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['hl7_messages.id'], name=op.f('fk_pharmacy_orders_message_id_hl7_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_pharmacy_orders_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pharmacy_orders'))
    )
    with op.batch_alter_table('pharmacy_orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pharmacy_orders_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_pharmacy_orders_tenant_time', ['tenant_id', 'ordered_at'], unique=False)


def downgrade() -> None:
    op.drop_table("pharmacy_orders")
    op.drop_table("pharmacy_dispenses")
    op.drop_table("pharmacy_administrations")
    op.drop_table("hl7_messages")
