"""Change detection: each run publishes, as canonical events, what a tenant's system recorded
since the stored watermark, and moves the watermark in the same transaction.

Why this is safe (docs/syncs.md#change-detection):

* A batch's events and the watermark after them commit together or not at all: a run that
  dies (worker killed, downstream gone, database refused) between batches leaves the
  watermark after the last committed batch, and the next run reads the rest, so nothing is
  lost and nothing committed is read twice.
* The watermark moves by compare-and-set (``WHERE position = <what this run read from>``): if
  two runs ever overlap (the single-flight lock outlived by a run), the second one's batch
  finds the watermark moved, rolls back its events and fails visibly instead of publishing the
  same records again.
* Delivery after the commit is at least once (webhook retries); subscribers dedupe by the
  stable event id, and the record's own id is in the event (``administration_id``,
  ``movement_id``).
* Memory is one batch (``HUB_CHANGE_BATCH_SIZE``); a run stops at its time budget
  (``HUB_CHANGE_RUN_SECONDS``) after a committed batch, and the next run continues.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.canonical.times import to_utc
from app.connectors.base import ChangePage, ConnectionTarget
from app.connectors.routing import NotConnected, connection_target
from app.database import utcnow
from app.entitlements.service import tenant_owns_product
from app.problems import Problem
from app.settings import Settings
from app.syncs.models import ChangeWatermark
from app.tenants.models import Tenant


@dataclass(frozen=True)
class ChangeFeed:
    """One system's change feed: where it is read and what each record becomes."""

    name: str
    product: str
    event_type: str
    # The connector capabilities (app.connectors.registry) that read the feed: its head, the
    # position at a moment (backfill), and a page of changes after a watermark.
    head_capability: str
    position_capability: str
    read_capability: str
    occurred_at: Callable[[dict], str]

    def head(self, target: ConnectionTarget) -> str:
        """The feed's position now (nothing before it is read)."""
        return target.call(self.head_capability)

    def position_at(self, target: ConnectionTarget, moment: datetime) -> str:
        """The position from which every record at or after ``moment`` is read."""
        return target.call(self.position_capability, moment)

    def read(self, target: ConnectionTarget, watermark: str, limit: int) -> ChangePage:
        """The records after ``watermark`` (at most ``limit``) and the watermark after them."""
        return target.call(self.read_capability, watermark, limit)


FEEDS: dict[str, ChangeFeed] = {feed.name: feed for feed in (
    ChangeFeed("administrations", "administration", "administration.recorded",
               "administration_feed_head", "administration_feed_position_at",
               "administrations_changed_since",
               lambda record: record["administered_at"]),
    ChangeFeed("movements", "inventory", "container.moved",
               "movement_feed_head", "movement_feed_position_at", "movements_changed_since",
               lambda record: record["movement"]["at"]),
)}

Publish = Callable[..., object]
"""``publish(*, db_session, settings, tenant_id, event_type, product, resource, occurred_at)``:
adds one event to the open transaction (never commits); returns it, or None if none was due."""
AfterCommit = Callable[[list], None]
"""Called with a batch's published events once their transaction has committed."""


def _target(db_session: Session, settings: Settings, tenant: Tenant, feed: ChangeFeed
            ) -> ConnectionTarget:
    return connection_target(db_session=db_session, settings=settings, tenant_id=str(tenant.id),
                             tenant=tenant.slug, product=feed.product)


def _key(tenant: Tenant, feed: ChangeFeed) -> tuple:
    return (ChangeWatermark.tenant_id == tenant.id, ChangeWatermark.product == feed.product,
            ChangeWatermark.feed == feed.name)


def watermark_of(*, db_session: Session, tenant: Tenant, feed: ChangeFeed) -> str | None:
    """The stored watermark of a tenant's feed (None: never read)."""
    return db_session.scalar(select(ChangeWatermark.position).where(*_key(tenant, feed)))


def _start(db_session: Session, tenant: Tenant, feed: ChangeFeed, position: str) -> None:
    db_session.add(ChangeWatermark(tenant_id=tenant.id, product=feed.product, feed=feed.name,
                                   position=position))
    try:
        db_session.commit()
    except IntegrityError:
        # Another run started the feed at the same moment: its start is as good.
        db_session.rollback()


def read_changes(*, db_session: Session, settings: Settings, tenant: Tenant, feed: ChangeFeed,
                 publish: Publish, after_commit: AfterCommit | None = None) -> dict:
    """Publish what the tenant's system recorded since the watermark, batch by batch, each
    batch committed with the watermark after it; return PHI-free counts.

    The first run of a tenant's feed only stores the feed's current head: history is not
    published (an operator backfills with ``start_from``).
    """
    target = _target(db_session, settings, tenant, feed)
    report = {"records_read": 0, "events_published": 0, "records_skipped": 0, "batches": 0,
              "feed_started": False, "budget_reached": False}
    position = watermark_of(db_session=db_session, tenant=tenant, feed=feed)
    if position is None:
        _start(db_session, tenant, feed, feed.head(target))
        report["feed_started"] = True
        return report
    # Half the task's hard limit at most: a run must stop between batches, not be killed.
    deadline = time.monotonic() + min(settings.hub_change_run_seconds,
                                      settings.hub_task_time_limit / 2)
    while True:
        page = feed.read(target, position, settings.hub_change_batch_size)
        events = []
        for record in page.records:
            event = publish(db_session=db_session, settings=settings, tenant_id=tenant.id,
                            event_type=feed.event_type, product=feed.product, resource=record,
                            occurred_at=to_utc(feed.occurred_at(record)))
            if event is not None:
                events.append(event)
        if page.watermark != position:
            moved = db_session.execute(
                update(ChangeWatermark).where(*_key(tenant, feed),
                                              ChangeWatermark.position == position)
                .values(position=page.watermark, updated_at=utcnow()))
            if moved.rowcount != 1:
                db_session.rollback()
                raise Problem("Another run moved this change feed's watermark; this run's "
                              "last batch was not published.", status=409,
                              problem_type="change-watermark-moved")
        db_session.commit()
        if after_commit is not None and events:
            after_commit(events)
        position = page.watermark
        report["batches"] += 1
        report["records_read"] += len(page.records) + page.skipped
        report["records_skipped"] += page.skipped
        report["events_published"] += len(events)
        if not page.more:
            return report
        if time.monotonic() >= deadline:
            report["budget_reached"] = True
            return report


def start_from(*, db_session: Session, settings: Settings, tenant: Tenant, feed: ChangeFeed,
               since: datetime | None) -> str:
    """Set the watermark of a tenant's feed so the next run publishes everything the system
    recorded at or after ``since`` (a backfill), or (None) from now on; return it. Events
    already published are not published twice (the event store keeps one per record)."""
    if not tenant_owns_product(db_session=db_session, tenant_id=str(tenant.id),
                               product=feed.product):
        raise Problem(f"The tenant is not entitled to the {feed.product} product.", status=404)
    try:
        target = _target(db_session, settings, tenant, feed)
    except NotConnected:
        raise Problem(f"The tenant has no active {feed.product} connection.",
                      status=404) from None
    position = feed.position_at(target, since) if since is not None else feed.head(target)
    updated = db_session.execute(update(ChangeWatermark).where(*_key(tenant, feed))
                                 .values(position=position, updated_at=utcnow()))
    if updated.rowcount == 0:
        db_session.add(ChangeWatermark(tenant_id=tenant.id, product=feed.product,
                                       feed=feed.name, position=position))
    db_session.commit()
    return position
