"""Webhook subscriptions as their tenant manages them: create (URL checked by the SSRF guard,
signing secret shown once), list, read, delete, resume a paused one, and each one's delivery
history and dead letters (replayable). Another tenant's subscription is 404, like a missing
one."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.canonical.times import to_utc
from app.clients.models import Client
from app.database import utcnow
from app.events import service
from app.events.destinations import DestinationRefused, Resolver, parse_networks, resolve
from app.events.models import Delivery, Event, Subscription
from app.events.signing import signing_secret, webhook_id
from app.paging import CursorKind, decode_cursor, encode_cursor, invalid_cursor, text
from app.problems import Problem
from app.settings import Settings

DELIVERIES_CURSOR = CursorKind("webhook_deliveries", {
    "created": text(r"^[0-9T:.+\- ]{10,40}$"), "delivery": text(r"^[0-9a-f-]{36}$")})


def _iso(moment: datetime | None) -> str | None:
    return to_utc(moment).isoformat().replace("+00:00", "Z") if moment else None


def _find(db_session: Session, tenant_id: str, subscription_id: str) -> Subscription:
    try:
        row = db_session.get(Subscription, uuid.UUID(str(subscription_id)))
    except ValueError:
        row = None
    if row is None or str(row.tenant_id) != str(tenant_id):
        raise Problem("No such subscription.", status=404)
    return row


def subscription_view(db_session: Session, subscription: Subscription) -> dict:
    """A subscription as its owner sees it: what, where, its health and why it is paused."""
    counts = dict(db_session.execute(
        select(Delivery.status, func.count()).where(Delivery.subscription_id == subscription.id)
        .group_by(Delivery.status)).all())
    return {
        "id": str(subscription.id), "url": subscription.url,
        "event_types": list(subscription.event_types),
        "filter": {"unit": subscription.filter_unit, "medication": subscription.filter_ndc11},
        "payload": subscription.payload, "status": subscription.status,
        "paused_reason": subscription.paused_reason, "paused_at": _iso(subscription.paused_at),
        "consecutive_failures": subscription.consecutive_failures,
        "failed_attempts": subscription.failed_attempts,
        "delivered": subscription.delivered, "dead_lettered": subscription.dead_lettered,
        "pending": counts.get("pending", 0) + counts.get("sending", 0),
        "refused": counts.get("refused", 0),
        "created_at": _iso(subscription.created_at), "created_by": subscription.created_by,
    }


def create_subscription(*, db_session: Session, settings: Settings, tenant_id: str,
                        client_id: str, url: str, event_types: list[str],
                        unit: str | None = None, medication: str | None = None,
                        payload: str = "full", resolver: Resolver | None = None) -> dict:
    """Create a subscription of the calling client; return it with its signing secret, which
    is shown this once. The URL must pass the SSRF guard now (and again at each delivery)."""
    try:
        resolve(url, allow_http=settings.hub_webhook_allow_http,
                allowed_networks=parse_networks(settings.hub_webhook_allowed_networks),
                **({"resolver": resolver} if resolver else {}))
    except DestinationRefused as refused:
        raise Problem("The request has invalid fields; see errors.", status=422,
                      errors={"json": {"url": [str(refused)]}}) from None
    client = db_session.scalar(select(Client).where(
        Client.client_id == client_id, Client.tenant_id == uuid.UUID(tenant_id)))
    if client is None:  # the bearer check saw it a moment ago: deleted since
        raise Problem("The client that made this request has been disabled.", status=403,
                      problem_type="client-disabled")
    subscription = Subscription(
        tenant_id=uuid.UUID(tenant_id), client_pk=client.id, url=url,
        event_types=sorted(set(event_types)), filter_unit=unit, filter_ndc11=medication,
        payload=payload, created_by=f"client:{client_id}")
    db_session.add(subscription)
    db_session.commit()
    view = subscription_view(db_session, subscription)
    view["secret"] = signing_secret(secret_key=settings.hub_secret_key,
                                    subscription_id=subscription.id)
    return view


def list_subscriptions(*, db_session: Session, tenant_id: str) -> list[dict]:
    """The tenant's subscriptions, oldest first."""
    rows = db_session.scalars(select(Subscription).where(
        Subscription.tenant_id == uuid.UUID(tenant_id)).order_by(Subscription.created_at))
    return [subscription_view(db_session, row) for row in rows]


def get_subscription(*, db_session: Session, tenant_id: str, subscription_id: str) -> dict:
    """One of the tenant's subscriptions."""
    return subscription_view(db_session, _find(db_session, tenant_id, subscription_id))


def delete_subscription(*, db_session: Session, tenant_id: str, subscription_id: str) -> None:
    """Delete a subscription and its delivery history; nothing more is sent to it."""
    db_session.delete(_find(db_session, tenant_id, subscription_id))
    db_session.commit()


def resume_subscription(*, db_session: Session, tenant_id: str, subscription_id: str) -> dict:
    """Resume a paused subscription: its failure streak starts again from 0 and the
    deliveries held while it was paused are sent."""
    subscription = _find(db_session, tenant_id, subscription_id)
    resumed = db_session.execute(update(Subscription).where(
        Subscription.id == subscription.id, Subscription.status == "paused").values(
        status="active", paused_reason=None, paused_at=None, consecutive_failures=0))
    db_session.commit()
    if not resumed.rowcount:
        raise Problem("The subscription is not paused.", status=409,
                      problem_type="subscription-not-paused")
    held = service.pending_deliveries(db_session=db_session, subscription_id=subscription.id)
    service.send_deliveries(held)
    db_session.refresh(subscription)
    return subscription_view(db_session, subscription)


def delivery_view(delivery: Delivery, event_type: str) -> dict:
    """A delivery as its owner sees it: ids, outcome, times and a PHI-free error only."""
    return {
        "id": str(delivery.id), "webhook_id": webhook_id(delivery.id),
        "event_id": str(delivery.event_id), "event_type": event_type,
        "status": delivery.status, "payload": delivery.payload_kind,
        "attempts": delivery.attempts, "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error, "created_at": _iso(delivery.created_at),
        "last_attempt_at": _iso(delivery.last_attempt_at),
        "next_attempt_at": _iso(delivery.next_attempt_at)
        if delivery.status in ("pending", "sending") else None,
        "delivered_at": _iso(delivery.delivered_at),
        "dead_lettered_at": _iso(delivery.dead_lettered_at),
        "replayed_at": _iso(delivery.replayed_at),
    }


def list_deliveries(*, db_session: Session, settings: Settings, tenant_id: str,
                    subscription_id: str, status: str | None, page_size: int,
                    cursor: str | None) -> dict:
    """A page of a subscription's deliveries, newest first (``status`` ``dead_lettered``: its
    dead letters), and the cursor of the next page."""
    subscription = _find(db_session, tenant_id, subscription_id)
    binding = {"key": settings.hub_secret_key, "tenant_id": tenant_id,
               "query": {"subscription": str(subscription.id), "status": status}}
    query = select(Delivery, Event.type).join(Event, Event.id == Delivery.event_id).where(
        Delivery.subscription_id == subscription.id)
    if status:
        query = query.where(Delivery.status == status)
    if cursor:
        position = decode_cursor(DELIVERIES_CURSOR, cursor, **binding)
        try:
            created = datetime.fromisoformat(position["created"])
            after = uuid.UUID(position["delivery"])
        except ValueError:
            raise invalid_cursor() from None
        query = query.where((Delivery.created_at < created) | (
            (Delivery.created_at == created) & (Delivery.id < after)))
    rows = db_session.execute(query.order_by(Delivery.created_at.desc(), Delivery.id.desc())
                              .limit(page_size + 1)).all()
    page = rows[:page_size]
    next_cursor = None
    if len(rows) > page_size:
        last = page[-1][0]
        next_cursor = encode_cursor(DELIVERIES_CURSOR, {
            "created": last.created_at.isoformat(), "delivery": str(last.id)}, **binding)
    return {"items": [delivery_view(delivery, event_type) for delivery, event_type in page],
            "next_cursor": next_cursor}


def replay_delivery(*, db_session: Session, tenant_id: str | None, delivery_id: str,
                    subscription_id: str | None = None) -> dict:
    """Send a dead-lettered delivery again, with the same ``webhook-id`` and a fresh retry
    horizon. ``tenant_id`` None: the hub's operators (the CLI)."""
    try:
        delivery = db_session.get(Delivery, uuid.UUID(str(delivery_id)))
    except ValueError:
        delivery = None
    if delivery is None or (tenant_id is not None and str(delivery.tenant_id) != tenant_id) \
            or (subscription_id is not None and str(delivery.subscription_id) != subscription_id):
        raise Problem("No such delivery.", status=404)
    replayed = db_session.execute(update(Delivery).where(
        Delivery.id == delivery.id, Delivery.status == "dead_lettered").values(
        status="pending", replayed_at=utcnow(), next_attempt_at=utcnow(),
        dispatched_at=utcnow()))
    db_session.commit()
    if not replayed.rowcount:
        raise Problem(f"Only dead-lettered deliveries are replayed; this one is "
                      f"{delivery.status}.", status=409, problem_type="delivery-not-replayable")
    service.send_deliveries([str(delivery.id)])
    db_session.refresh(delivery)
    return delivery_view(delivery, db_session.get(Event, delivery.event_id).type)


def list_dead_letters(*, db_session: Session, tenant_id: str | None = None) -> list[dict]:
    """Dead-lettered deliveries (of one tenant, or all for the hub's operators), newest
    first, with their subscription."""
    query = select(Delivery, Event.type).join(Event, Event.id == Delivery.event_id).where(
        Delivery.status == "dead_lettered")
    if tenant_id is not None:
        query = query.where(Delivery.tenant_id == uuid.UUID(tenant_id))
    rows = db_session.execute(query.order_by(Delivery.dead_lettered_at.desc())).all()
    return [{**delivery_view(delivery, event_type),
             "subscription_id": str(delivery.subscription_id)} for delivery, event_type in rows]
