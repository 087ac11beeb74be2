"""Canonical events: publishing them (inside the caller's transaction), fanning each out to the
subscriptions that want it, and the sweeper that finds fan-outs and deliveries whose task was
never sent (the outbox). Subscriptions are managed in ``app.events.subscriptions`` and
delivered in ``app.events.delivery``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.canonical.times import to_utc
from app.database import utcnow
from app.events.models import Delivery, Event, Subscription
from app.events.types import EVENT_TYPES
from app.jobs import dispatch
from app.observability import metrics
from app.phi.boundary import assert_no_phi_fields
from app.phi.policy import EVENT_STORE, minimize
from app.phi.pseudonyms import Pseudonymizer, tenant_pseudonym_key
from app.settings import Settings

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500
"""Events and deliveries one sweep sends at most: a long broker outage is caught up over a few
sweeps instead of one burst."""

# What sending to the broker raises when it is down (the outbox then has the work).
BROKER_ERRORS = dispatch.BROKER_ERRORS


class UnknownEventType(ValueError):
    """``publish`` was given an event type the hub does not know (a programming error)."""


def pseudonymizer_for(settings: Settings, tenant_id: uuid.UUID | str) -> Pseudonymizer:
    """The tenant's pseudonymizer (the same keys as lookups, so refs agree across paths)."""
    return Pseudonymizer(tenant_pseudonym_key(settings.hub_pseudonym_key, str(tenant_id)))


def _listened_to(db_session: Session, tenant_id: uuid.UUID, event_type: str) -> bool:
    subscriptions = db_session.scalars(select(Subscription.event_types).where(
        Subscription.tenant_id == tenant_id))
    return any(event_type in types for types in subscriptions)


def _insert_for(db_session: Session):
    dialect = db_session.get_bind().dialect.name
    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]


def publish(*, db_session: Session, settings: Settings, tenant_id: uuid.UUID, event_type: str,
            product: str, resource: dict, occurred_at: datetime) -> Event | None:
    """Store one canonical event, minimized, for fan-out to the tenant's subscriptions.

    Runs inside the caller's transaction and does not commit: the event is stored with the
    caller's change or not at all. After committing, the caller passes the returned events to
    :func:`notify_published` (if that send fails, the sweeper sends it later).

    ``resource`` is a canonical record (it may hold PHI in memory); only its minimized form is
    stored (``app.phi.policy``, consumer ``event_store``). ``product`` is the product whose data
    it is: each subscriber's tenant must own it at delivery time. Returns None, storing
    nothing, when no subscription of the tenant listens to ``event_type`` or the same event
    (type, resource id, time) was published before.
    """
    try:
        kind = EVENT_TYPES[event_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {event_type!r}; known: "
                               f"{sorted(EVENT_TYPES)}") from None
    if not _listened_to(db_session, tenant_id, event_type):
        return None
    payload = minimize(kind.resource_type, EVENT_STORE, resource,
                       pseudonymizer=pseudonymizer_for(settings, tenant_id))
    assert_no_phi_fields(payload, "event")
    resource_id = kind.read(payload, kind.id_path)
    values = {"id": uuid.uuid4(), "tenant_id": tenant_id, "type": event_type, "product": product,
              "resource_type": kind.resource_type,
              "resource_id": None if resource_id is None else str(resource_id),
              "unit": kind.read(payload, kind.unit_path),
              "ndc11": kind.read(payload, kind.ndc11_path), "occurred_at": to_utc(occurred_at),
              "recorded_at": utcnow(), "payload": payload}
    # ON CONFLICT DO NOTHING, not a savepoint: the same event published again (or by two
    # processes at once) adds nothing and leaves the caller's transaction as it was (a
    # savepoint's release would commit it on SQLite's driver).
    insert = _insert_for(db_session)(Event).values(**values).on_conflict_do_nothing(
        index_elements=["tenant_id", "type", "resource_id", "occurred_at"]).returning(Event.id)
    event_id = db_session.execute(insert).scalar()
    if event_id is None:
        return None
    event = db_session.get(Event, event_id)
    metrics.EVENTS_PUBLISHED.labels(type=event_type).inc()
    return event


def notify_published(events: Iterable[Event | uuid.UUID | str | None]) -> int:
    """Send the fan-out task of each published event (call after the commit; Nones from
    :func:`publish` are skipped). Returns how many were sent. A broker that is down is logged
    and left to the sweeper, which finds events not yet fanned out."""
    sent = 0
    for event in events:
        if event is None:
            continue
        event_id = str(event.id if isinstance(event, Event) else event)
        try:
            dispatch.fan_out_event(event_id=event_id)
        except BROKER_ERRORS:
            logger.warning("event fan-out not sent (broker unreachable); the sweeper will",
                           extra={"event_id": event_id})
            continue
        sent += 1
    return sent


# --- fan-out ---------------------------------------------------------------------------------

def _matches(subscription: Subscription, event: Event) -> bool:
    if event.type not in subscription.event_types:
        return False
    if subscription.filter_unit and subscription.filter_unit != event.unit:
        return False
    return not (subscription.filter_ndc11 and subscription.filter_ndc11 != event.ndc11)


def fan_out(*, db_session: Session, event_id: str) -> list[str]:
    """Make the event's deliveries (one per matching subscription; paused subscriptions' wait)
    and mark it fanned out. Returns the ids of deliveries to send now. Idempotent: a repeated
    fan-out adds nothing."""
    event = db_session.get(Event, uuid.UUID(event_id))
    if event is None:
        return []
    existing = set(db_session.scalars(select(Delivery.subscription_id).where(
        Delivery.event_id == event.id)))
    subscriptions = db_session.scalars(select(Subscription).where(
        Subscription.tenant_id == event.tenant_id))
    now = utcnow()
    for subscription in subscriptions:
        if subscription.id in existing or not _matches(subscription, event):
            continue
        db_session.add(Delivery(event_id=event.id, subscription_id=subscription.id,
                                tenant_id=event.tenant_id, next_attempt_at=now))
    event.fanned_out_at = event.fanned_out_at or now
    try:
        db_session.commit()
    except IntegrityError:  # a redelivered fan-out raced this one: theirs stand
        db_session.rollback()
    return _mark_dispatched(db_session, select(Delivery.id).join(
        Subscription, Subscription.id == Delivery.subscription_id).where(
        Delivery.event_id == event.id, Delivery.status == "pending",
        Delivery.dispatched_at.is_(None), Subscription.status == "active"))


def _mark_dispatched(db_session: Session, query) -> list[str]:
    ids = list(db_session.scalars(query.limit(SWEEP_BATCH)))
    if ids:
        db_session.execute(update(Delivery).where(Delivery.id.in_(ids))
                           .values(dispatched_at=utcnow()))
        db_session.commit()
    return [str(delivery_id) for delivery_id in ids]


def pending_deliveries(*, db_session: Session, subscription_id: uuid.UUID) -> list[str]:
    """Make a subscription's pending deliveries due now, mark them sent and return their ids
    (to send): what a resumed subscription held while it was paused."""
    db_session.execute(update(Delivery).where(
        Delivery.subscription_id == subscription_id, Delivery.status == "pending").values(
        next_attempt_at=utcnow()))
    return _mark_dispatched(db_session, select(Delivery.id).where(
        Delivery.subscription_id == subscription_id, Delivery.status == "pending")
        .order_by(Delivery.created_at))


def send_deliveries(delivery_ids: Iterable[str]) -> int:
    """Send the delivery task of each id; a broker that is down leaves them to the sweeper."""
    sent = 0
    for delivery_id in delivery_ids:
        try:
            dispatch.deliver_webhook(delivery_id=delivery_id)
        except BROKER_ERRORS:
            logger.warning("webhook delivery not sent (broker unreachable); the sweeper will",
                           extra={"delivery_id": delivery_id})
            return sent
        sent += 1
    return sent


# --- the sweeper (outbox) --------------------------------------------------------------------

def sweep(*, db_session: Session, settings: Settings) -> dict:
    """Send what was stored but never sent: fan-outs of events older than the grace period
    that are not fanned out, deliveries that are due with no task queued (or whose task was
    queued longer ago than the grace period and has not run), and deliveries whose worker died
    mid-attempt. Returns counts."""
    now = utcnow()
    grace = now - timedelta(seconds=settings.hub_webhook_sweep_grace_seconds)
    # A claim outlived: the worker that took it died before recording the outcome.
    abandoned = db_session.execute(update(Delivery).where(
        Delivery.status == "sending", Delivery.claimed_until < now).values(
        status="pending", claimed_until=None, dispatched_at=None))
    db_session.commit()
    events = list(db_session.scalars(select(Event.id).where(
        Event.fanned_out_at.is_(None), Event.recorded_at <= grace)
        .order_by(Event.recorded_at).limit(SWEEP_BATCH)))
    fan_outs = notify_published(events)
    due = _mark_dispatched(db_session, select(Delivery.id).join(
        Subscription, Subscription.id == Delivery.subscription_id).where(
        Subscription.status == "active", Delivery.status == "pending",
        or_(and_(Delivery.dispatched_at.is_(None), Delivery.next_attempt_at <= now),
            and_(Delivery.next_attempt_at <= grace, Delivery.dispatched_at <= grace)))
        .order_by(Delivery.next_attempt_at))
    deliveries = send_deliveries(due)
    return {"events": fan_outs, "deliveries": deliveries, "abandoned": abandoned.rowcount}
