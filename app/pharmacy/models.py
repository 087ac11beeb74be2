"""Tables of the pharmacy's HL7 v2 messages and the records they carried.

``hl7_messages`` is the receipt log: one row per (sender, message control id), which is what
makes a resent message an acknowledged duplicate instead of a second dispense. No table holds
the raw message or any PID content but the tenant pseudonym of the patient.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.database import Base, new_id, utcnow

SENDER_FIELD_LENGTH = 64
"""Longest MSH-3/MSH-4 namespace id and MSH-10 control id the hub keeps (HL7 gives 20; some
senders send GUIDs)."""


class Hl7Message(Base):
    """One HL7 v2 message received from a sender, and how the hub answered it."""

    __tablename__ = "hl7_messages"
    __table_args__ = (UniqueConstraint("sender_application", "sender_facility", "control_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # None when the sender belongs to no tenant (the refusal is logged all the same).
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    sender_application: Mapped[str] = mapped_column(String(SENDER_FIELD_LENGTH))
    sender_facility: Mapped[str] = mapped_column(String(SENDER_FIELD_LENGTH))
    control_id: Mapped[str] = mapped_column(String(SENDER_FIELD_LENGTH))
    message_type: Mapped[str] = mapped_column(String(32))
    transport: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # AA, AE or AR: what the sender was told.
    ack_code: Mapped[str] = mapped_column(String(2))
    # HL7 table 0357 code of the refusal (None when accepted).
    error_code: Mapped[str | None] = mapped_column(String(8))
    # Times the same control id came again after it was accepted (answered AA, not processed).
    repeats: Mapped[int] = mapped_column(Integer, default=0)


class _PharmacyRecord:
    """Columns every record carried by a pharmacy message has."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    order_number: Mapped[str] = mapped_column(String(64))
    patient_pseudonym: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(32))
    ndc11: Mapped[str] = mapped_column(String(11))
    medication_name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[float] = mapped_column(Float)
    dose_unit: Mapped[str] = mapped_column(String(32))
    route: Mapped[str | None] = mapped_column(String(32))
    container_barcode: Mapped[str | None] = mapped_column(String(64))


class PharmacyOrder(_PharmacyRecord, Base):
    """A medication order as the pharmacy received it (RDE^O11)."""

    __tablename__ = "pharmacy_orders"
    __table_args__ = (Index("ix_pharmacy_orders_tenant_time", "tenant_id", "ordered_at"),)

    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("hl7_messages.id", ondelete="CASCADE"), index=True)
    ordered_at: Mapped[datetime] = mapped_column()


class PharmacyDispense(_PharmacyRecord, Base):
    """Medication the pharmacy dispensed to a unit for a patient (RDS^O13)."""

    __tablename__ = "pharmacy_dispenses"
    __table_args__ = (Index("ix_pharmacy_dispenses_tenant_time", "tenant_id", "dispensed_at"),)

    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("hl7_messages.id", ondelete="CASCADE"), index=True)
    dispense_id: Mapped[str] = mapped_column(String(64))
    dispensed_at: Mapped[datetime] = mapped_column()


class PharmacyAdministration(_PharmacyRecord, Base):
    """A dose given, as the pharmacy system heard of it (RAS^O17)."""

    __tablename__ = "pharmacy_administrations"
    __table_args__ = (Index("ix_pharmacy_administrations_tenant_time", "tenant_id",
                            "administered_at"),)

    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("hl7_messages.id", ondelete="CASCADE"), index=True)
    administration_id: Mapped[str] = mapped_column(String(64))
    # None when the message names no administering nurse (RXA-10 is optional).
    nurse_pseudonym: Mapped[str | None] = mapped_column(String(64))
    administered_at: Mapped[datetime] = mapped_column()
