"""Attempting one webhook delivery: claim it, pass the entitlement gate and the subscriber's PHI
policy as they stand now, sign, send to the checked address, and record the outcome (delivered;
failed and due again after a backoff; dead-lettered once the retry horizon is spent; refused).

A delivery is at least once: the claim (a conditional update) keeps two copies of its task
from sending at the same moment, and a worker that dies mid-attempt leaves a claim that
expires, after which the sweeper sends the delivery again with the same ``webhook-id``.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import urllib3
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.canonical.times import to_utc
from app.clients.models import Client
from app.database import utcnow
from app.entitlements.service import entitlement_refusal, missing_scopes
from app.events.destinations import (
    DestinationRefused,
    Resolver,
    parse_networks,
    post,
    resolve,
)
from app.events.models import Delivery, Event, Subscription
from app.events.service import pseudonymizer_for
from app.events.signing import signed_headers, signing_secret, webhook_id
from app.events.types import EVENT_TYPES
from app.observability import metrics
from app.phi.boundary import UnsafeResult, assert_no_phi_fields
from app.phi.policy import PolicyMissing, RecordShapeError, minimize
from app.settings import Settings

logger = logging.getLogger(__name__)

MAX_BROKER_WAIT_SECONDS = 300.0
"""A retry due sooner than this is sent to the broker with a countdown; a later one is left to
the sweeper. The Redis broker keeps a countdown task in a worker's memory unacknowledged and
hands it to another worker after the visibility timeout, so long countdowns would run twice."""

USER_AGENT = "medication-hub-webhooks/1"


@dataclass(frozen=True)
class AttemptResult:
    """What one run of the delivery task did: ``delivered``, ``failed`` (``retry_in`` seconds
    later; None: the sweeper sends it), ``dead_lettered``, ``refused``, ``held`` (its
    subscription is paused) or ``skipped`` (not due, or another task has it)."""

    outcome: str
    retry_in: float | None = None


def _iso(moment: datetime) -> str:
    return to_utc(moment).isoformat().replace("+00:00", "Z")


def _consumer(client: Client) -> str:
    return client.product.code if client.product else "operator"


def render(*, settings: Settings, event: Event, subscription: Subscription, client: Client
           ) -> tuple[str, str]:
    """The JSON body this subscriber may receive for ``event`` and its kind (``full`` or
    ``notification``), decided now: the full payload needs the subscription to ask for it,
    the client to hold the event type's read scope, and a PHI policy for the client's
    consumer; otherwise the ids only."""
    kind = EVENT_TYPES[event.type]
    data: dict = {"event_id": str(event.id), "resource_type": event.resource_type,
                  "resource_id": event.resource_id}
    payload_kind = "notification"
    granted = set(client.scopes.split())
    if subscription.payload == "full" and not missing_scopes(granted, {kind.scope}):
        try:
            data["resource"] = minimize(f"{event.resource_type}_event", _consumer(client),
                                        event.payload,
                                        pseudonymizer=pseudonymizer_for(settings, event.tenant_id))
            payload_kind = "full"
        except PolicyMissing:
            pass
    body = {"type": event.type, "timestamp": _iso(event.occurred_at), "data": data}
    # The last check before the data leaves the hub: no raw PHI field, whatever the policies say.
    assert_no_phi_fields(body, "webhook")
    return json.dumps(body, separators=(",", ":"), sort_keys=True), payload_kind


def _claim(db_session: Session, delivery_id: uuid.UUID, settings: Settings) -> bool:
    now = utcnow()
    hold = timedelta(seconds=settings.hub_webhook_timeout_seconds * 2 + 30)
    claimed = db_session.execute(update(Delivery).where(
        Delivery.id == delivery_id, Delivery.status == "pending",
        # A little early is fine: countdowns and clocks are not exact.
        Delivery.next_attempt_at <= now + timedelta(seconds=1)).values(
        status="sending", claimed_until=now + hold, dispatched_at=None))
    db_session.commit()
    return claimed.rowcount == 1


def _failure_text(error: Exception, settings: Settings) -> str:
    """A PHI-free sentence for a failed attempt (the exception text may quote addresses)."""
    if isinstance(error, DestinationRefused):
        return str(error)
    if isinstance(error, urllib3.exceptions.TimeoutError):
        return (f"The receiver did not answer within {settings.hub_webhook_timeout_seconds:g} "
                "seconds.")
    if isinstance(error, urllib3.exceptions.SSLError):
        return "The TLS handshake with the receiver failed (certificate or protocol)."
    return "The receiver could not be reached (connection refused or reset)."


def _answer_text(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"The receiver answered HTTP {status}, a redirect; redirects are not followed."
    return f"The receiver answered HTTP {status}."


def _backoff(attempts: int, settings: Settings) -> float:
    """Exponential backoff with jitter: about base × 2^(attempts-1), capped, spread over the
    upper half so retries of many deliveries that failed together do not arrive together."""
    ceiling = min(settings.hub_webhook_retry_max_seconds,
                  settings.hub_webhook_retry_base_seconds * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


def attempt_delivery(*, db_session: Session, settings: Settings, delivery_id: str,
                     resolver: Resolver | None = None) -> AttemptResult:
    """Make one attempt of one delivery, if it is due and nobody else has it."""
    key = uuid.UUID(delivery_id)
    if not _claim(db_session, key, settings):
        return AttemptResult("skipped")
    delivery = db_session.get(Delivery, key)
    subscription = db_session.get(Subscription, delivery.subscription_id)
    event = db_session.get(Event, delivery.event_id)
    started = utcnow()
    if subscription.status != "active":
        # Held until its owner resumes it; resuming sends it.
        delivery.status, delivery.claimed_until = "pending", None
        db_session.commit()
        return AttemptResult("held")
    metrics.WEBHOOK_QUEUE_LAG.observe(
        max(0.0, (started - to_utc(delivery.next_attempt_at)).total_seconds()))
    # The one entitlement gate, asked afresh: a client disabled or a product revoked after the
    # event was published stops its delivery. Refused is final; it is not retried.
    refusal = entitlement_refusal(db_session=db_session, tenant_id=str(event.tenant_id),
                                  products=(event.product,), client_pk=subscription.client_pk,
                                  remembered=False)
    if refusal is not None:
        delivery.status, delivery.claimed_until = "refused", None
        delivery.last_attempt_at, delivery.last_error = started, refusal.detail
        db_session.commit()
        metrics.WEBHOOK_DELIVERIES.labels(outcome="refused").inc()
        logger.info("webhook delivery refused by the entitlement gate",
                    extra={"delivery_id": delivery_id, "subscription_id": str(subscription.id)})
        return AttemptResult("refused")

    client = db_session.get(Client, subscription.client_pk)
    try:
        body, payload_kind = render(settings=settings, event=event, subscription=subscription,
                                    client=client)
    except (UnsafeResult, RecordShapeError):
        # A policy or boundary refusal is not going to pass on a retry: final, like the gate.
        delivery.status, delivery.claimed_until, delivery.last_attempt_at = \
            "refused", None, started
        delivery.last_error = "The event's payload was refused by the hub's PHI checks."
        db_session.commit()
        metrics.WEBHOOK_DELIVERIES.labels(outcome="refused").inc()
        return AttemptResult("refused")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               **signed_headers(secret=signing_secret(secret_key=settings.hub_secret_key,
                                                      subscription_id=subscription.id),
                                message_id=webhook_id(delivery.id), sent_at=started,
                                body=body)}
    status_code, error = None, None
    try:
        destination = resolve(subscription.url, allow_http=settings.hub_webhook_allow_http,
                              allowed_networks=parse_networks(
                                  settings.hub_webhook_allowed_networks),
                              **({"resolver": resolver} if resolver else {}))
        answer = post(destination, body=body.encode(), headers=headers,
                      timeout=settings.hub_webhook_timeout_seconds)
        status_code, error = answer.status, _answer_text(answer.status)
    except (DestinationRefused, urllib3.exceptions.HTTPError, OSError) as failure:
        error = _failure_text(failure, settings)

    delivery.attempts += 1
    delivery.payload_kind = payload_kind
    delivery.last_attempt_at, delivery.last_status_code = started, status_code
    delivery.last_error, delivery.claimed_until = error, None
    if error is None:
        return _delivered(db_session, delivery, subscription)
    return _failed(db_session, settings, delivery, subscription, error)


def _delivered(db_session: Session, delivery: Delivery, subscription: Subscription
               ) -> AttemptResult:
    delivery.status, delivery.delivered_at = "delivered", utcnow()
    db_session.execute(update(Subscription).where(Subscription.id == subscription.id).values(
        consecutive_failures=0, delivered=Subscription.delivered + 1))
    db_session.commit()
    metrics.WEBHOOK_DELIVERIES.labels(outcome="delivered").inc()
    return AttemptResult("delivered")


def _failed(db_session: Session, settings: Settings, delivery: Delivery,
            subscription: Subscription, error: str) -> AttemptResult:
    now = utcnow()
    wait = _backoff(delivery.attempts, settings)
    horizon_from = to_utc(delivery.replayed_at or delivery.created_at)
    horizon = timedelta(seconds=settings.hub_webhook_retry_horizon_seconds)
    exhausted = now + timedelta(seconds=wait) > horizon_from + horizon
    db_session.execute(update(Subscription).where(Subscription.id == subscription.id).values(
        consecutive_failures=Subscription.consecutive_failures + 1,
        failed_attempts=Subscription.failed_attempts + 1,
        dead_lettered=Subscription.dead_lettered + (1 if exhausted else 0)))
    if exhausted:
        delivery.status, delivery.dead_lettered_at = "dead_lettered", now
        result = AttemptResult("dead_lettered")
    else:
        retry_in = wait if wait <= MAX_BROKER_WAIT_SECONDS else None
        delivery.status = "pending"
        delivery.next_attempt_at = now + timedelta(seconds=wait)
        # Marked as queued only when the task will carry the countdown; otherwise the sweeper
        # sends it when it falls due.
        delivery.dispatched_at = now if retry_in is not None else None
        result = AttemptResult("failed", retry_in)
    db_session.commit()
    db_session.refresh(subscription)
    if (subscription.status == "active"
            and subscription.consecutive_failures >= settings.hub_webhook_pause_after_failures):
        _pause(db_session, subscription, error)
    metrics.WEBHOOK_DELIVERIES.labels(outcome=result.outcome).inc()
    logger.warning("webhook delivery attempt failed", extra={
        "delivery_id": str(delivery.id), "subscription_id": str(subscription.id),
        "attempts": delivery.attempts, "outcome": result.outcome,
        "status_code": delivery.last_status_code})
    return result


def _pause(db_session: Session, subscription: Subscription, error: str) -> None:
    paused = db_session.execute(update(Subscription).where(
        Subscription.id == subscription.id, Subscription.status == "active").values(
        status="paused", paused_at=utcnow(),
        paused_reason=f"Paused after {subscription.consecutive_failures} consecutive failed "
                      f"delivery attempts. The last: {error} Fix the receiver, then resume "
                      "the subscription; held deliveries are sent then."))
    db_session.commit()
    if paused.rowcount:
        logger.warning("webhook subscription paused after repeated failures",
                       extra={"subscription_id": str(subscription.id)})
