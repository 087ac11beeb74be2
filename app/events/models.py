"""Tables of events, webhook subscriptions and deliveries. None holds PHI: an event's payload
is minimized by the PHI policy before it is stored, and a delivery records outcomes only."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.database import Base, new_id, utcnow


class Event(Base):
    """Something that happened at a tenant's hospital, in canonical, minimized form.

    ``fanned_out_at`` is the outbox mark: NULL until the fan-out task has made the event's
    deliveries, so an event committed while the broker was down (its fan-out never sent) is
    found and sent again by the sweeper.
    """

    __tablename__ = "events"
    # One event per thing that happened: a sync reading a record again, or a system sending a
    # message twice, publishes nothing new.
    __table_args__ = (UniqueConstraint("tenant_id", "type", "resource_id", "occurred_at"),
                      Index("ix_events_tenant_recorded", "tenant_id", "recorded_at"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    # The product whose data this is: the entitlement a subscriber's tenant needs.
    product: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(200))
    # Copied out of the payload for subscription filters.
    unit: Mapped[str | None] = mapped_column(String(64))
    ndc11: Mapped[str | None] = mapped_column(String(11))
    occurred_at: Mapped[datetime] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    payload: Mapped[dict] = mapped_column(JSON)
    fanned_out_at: Mapped[datetime | None] = mapped_column(index=True)


class Subscription(Base):
    """A tenant client's webhook: which events, which filter, where to, and its health.

    The signing secret is not stored: it is derived from the hub's secret key and the
    subscription id when needed (see ``app.events.signing``).
    """

    __tablename__ = "webhook_subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                                 index=True)
    # The client that created it: delivery re-checks that this client is still enabled, and
    # its product and scopes decide what each payload may carry.
    client_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list] = mapped_column(JSON)
    filter_unit: Mapped[str | None] = mapped_column(String(64))
    filter_ndc11: Mapped[str | None] = mapped_column(String(11))
    payload: Mapped[str] = mapped_column(String(16), default="full")
    status: Mapped[str] = mapped_column(String(16), default="active")
    # A PHI-free sentence its owner reads: why deliveries stopped.
    paused_reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None] = mapped_column()
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    dead_lettered: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class Delivery(Base):
    """One event for one subscription, from pending to delivered, refused or dead-lettered.

    One row per (event, subscription): its id is the stable ``webhook-id`` across retries and
    replays, so a receiver can drop duplicates.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "subscription_id"),
                      Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
                      Index("ix_webhook_deliveries_subscription_created", "subscription_id",
                            "created_at"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # pending → sending → delivered | pending (retry) | dead_lettered | refused
    status: Mapped[str] = mapped_column(String(16), default="pending")
    payload_kind: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # NULL: nothing is queued for it (the sweeper sends it when due).
    dispatched_at: Mapped[datetime | None] = mapped_column()
    claimed_until: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    # PHI-free: an HTTP status, a timeout, a refused address; never the receiver's body.
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column()
    dead_lettered_at: Mapped[datetime | None] = mapped_column()
    replayed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
