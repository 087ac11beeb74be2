"""The kinds of sync the hub runs, each with its task, its scope and what one run does.

A tenant sync exists for every active tenant that is entitled and connected to the kind's
product (to any product when the kind names none); a hub-wide sync exists once. ``run`` does
one run and returns a PHI-free report (counts and ids); it raises when the run failed. It is
called with the handles keyword-only (``db_session``, ``redis_client``, ``settings``, ``tenant``)
and passes on only those its service takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
from sqlalchemy.orm import Session

from app.events import service as events
from app.lookups.warming import warm_cache
from app.maintenance.service import purge_expired
from app.settings import Settings
from app.snapshots.service import sync_inventory_snapshot
from app.syncs.changes import FEEDS, read_changes
from app.syncs.nightly import submit_previous_day_counts
from app.tenants.models import Tenant


@dataclass(frozen=True)
class SyncKind:
    name: str
    task: str
    hub_wide: bool
    product: str | None
    default_setting: str
    description: str
    run: Callable[..., dict]
    # Report fields whose non-zero count makes a run worth an INFO log line; empty: any count.
    # A change sync that read records nobody subscribes to is routine, and a stack idling with
    # its demo systems recording would otherwise log it every minute for every tenant.
    notable: tuple[str, ...] = ()


def _inventory_snapshot(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
                        tenant: Tenant | None) -> dict:
    return sync_inventory_snapshot(db_session=db_session, settings=settings, tenant=tenant)


def _cache_warming(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
                   tenant: Tenant | None) -> dict:
    return warm_cache(db_session=db_session, redis_client=redis_client, settings=settings,
                      tenant=tenant)


def _nightly_counts(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
                    tenant: Tenant | None) -> dict:
    return submit_previous_day_counts(db_session=db_session, redis_client=redis_client,
                                      settings=settings, tenant=tenant)


def _retention_purge(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
                     tenant: Tenant | None) -> dict:
    return purge_expired(db_session=db_session,
                         audit_retention_days=settings.hub_audit_retention_days,
                         sync_run_retention_days=settings.hub_sync_run_retention_days,
                         event_retention_days=settings.hub_event_retention_days
                         ).as_report()


def _changes(feed_name: str) -> Callable[..., dict]:
    def run(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
            tenant: Tenant | None) -> dict:
        return read_changes(db_session=db_session, settings=settings, tenant=tenant,
                            feed=FEEDS[feed_name], publish=events.publish,
                            after_commit=events.notify_published)
    return run


CHANGE_NOTABLE = ("events_published", "records_skipped", "budget_reached")

SYNC_KINDS: dict[str, SyncKind] = {kind.name: kind for kind in (
    SyncKind("inventory_snapshot", "hub.io.sync_inventory_snapshot", False, "inventory",
             "hub_sync_inventory_snapshot",
             "System A's location catalogue, containers on hand and movements, copied into the "
             "hub so origin and inventory lookups answer while System A is down.",
             _inventory_snapshot),
    SyncKind("cache_warming", "hub.io.warm_cache", False, None,
             "hub_sync_cache_warming",
             "The tenant's most requested lookups, refreshed in the cache before they expire.",
             _cache_warming),
    SyncKind("nightly_counts", "hub.io.submit_nightly_counts", False, "administration",
             "hub_sync_nightly_counts",
             "The previous local day's administration counts per unit and medication, "
             "submitted as an administration_counts job (see /v1/jobs).",
             _nightly_counts),
    SyncKind("administration_changes", "hub.io.read_administration_changes", False,
             "administration", "hub_sync_administration_changes",
             "Change detection on System B: doses charted since the stored watermark (late "
             "charting included), each published as an administration.recorded event.",
             _changes("administrations"), notable=CHANGE_NOTABLE),
    SyncKind("movement_changes", "hub.io.read_movement_changes", False, "inventory",
             "hub_sync_movement_changes",
             "Change detection on System A: container movements scanned since the stored "
             "watermark, each published as a container.moved event.",
             _changes("movements"), notable=CHANGE_NOTABLE),
    SyncKind("retention_purge", "hub.maintenance.purge_expired_data", True, None,
             "hub_sync_retention_purge",
             "Hub-wide: removes expired job results, idempotency keys (and their jobs' sent "
             "outbox messages), unit partials, "
             "snapshot movements of containers System A dropped, old sync runs, delivered "
             "events and audit events past their retention.",
             _retention_purge),
)}

# Field names a run's report may contain (checked by app.phi.boundary.assert_phi_free before a
# report is stored). A new report field is added here on purpose, after checking it cannot
# carry patient data.
REPORT_FIELDS = frozenset({
    "locations", "containers", "on_hand", "movements_added", "records_skipped",
    "candidates", "refreshed", "unavailable", "not_found", "refused",
    "day", "job_id", "submitted", "job_status",
    "started_at", "job_results", "idempotency_keys", "unit_partials", "snapshot_movements",
    "sync_runs", "audit_events", "events", "outbox_messages",
    "records_read", "events_published", "batches", "feed_started", "budget_reached",
})
