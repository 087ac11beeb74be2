"""The kinds of sync the hub runs, each with its task, its scope and what one run does.

A tenant sync exists for every active tenant that is entitled and connected to the kind's
product (to any product when the kind names none); a hub-wide sync exists once. ``run`` does
one run and returns a PHI-free report (counts and ids); it raises when the run failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.extensions import HubResources
from app.lookups.warming import warm_cache
from app.maintenance.service import purge_expired
from app.snapshots.service import sync_inventory_snapshot
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
    run: Callable[[HubResources, Tenant | None], dict]


def _inventory_snapshot(hub: HubResources, tenant: Tenant | None) -> dict:
    return sync_inventory_snapshot(db_session=hub.database.session, settings=hub.settings,
                                   tenant=tenant)


def _retention_purge(hub: HubResources, _tenant: Tenant | None) -> dict:
    return purge_expired(db_session=hub.database.session,
                         audit_retention_days=hub.settings.hub_audit_retention_days,
                         sync_run_retention_days=hub.settings.hub_sync_run_retention_days
                         ).as_report()


SYNC_KINDS: dict[str, SyncKind] = {kind.name: kind for kind in (
    SyncKind("inventory_snapshot", "hub.io.sync_inventory_snapshot", False, "inventory",
             "hub_sync_inventory_snapshot",
             "System A's location catalogue, containers on hand and movements, copied into the "
             "hub so origin and inventory lookups answer while System A is down.",
             _inventory_snapshot),
    SyncKind("cache_warming", "hub.io.warm_cache", False, None,
             "hub_sync_cache_warming",
             "The tenant's most requested lookups, refreshed in the cache before they expire.",
             lambda hub, tenant: warm_cache(hub=hub, tenant=tenant)),
    SyncKind("nightly_counts", "hub.io.submit_nightly_counts", False, "administration",
             "hub_sync_nightly_counts",
             "The previous local day's administration counts per unit and medication, "
             "submitted as an administration_counts job (see /v1/jobs).",
             lambda hub, tenant: submit_previous_day_counts(hub=hub, tenant=tenant)),
    SyncKind("retention_purge", "hub.maintenance.purge_expired_data", True, None,
             "hub_sync_retention_purge",
             "Hub-wide: removes expired job results, idempotency keys, unit partials, "
             "snapshot movements of containers System A dropped, old sync runs and audit "
             "events past their retention.",
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
    "sync_runs", "audit_events",
})
