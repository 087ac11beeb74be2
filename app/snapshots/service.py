"""The inventory snapshot: a sync that copies a tenant's System A catalogue, containers and
movements into the hub, and the reads that answer origin and inventory lookups from that copy
while System A is down.

The copy is canonical (the connector maps it) and PHI-free (System A holds no patients); the
lookups minimize it exactly as they minimize a live answer before it leaves the hub.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.canonical.times import to_utc
from app.connectors.routing import connection_target
from app.database import utcnow
from app.settings import Settings
from app.snapshots.models import SnapshotContainer, SnapshotLocation, SnapshotMovement
from app.tenants.models import Tenant

# System A stamps a movement with the time it happened, which can be a little earlier than the
# time it becomes visible; asking again from a bit before the latest stored one catches those.
MOVEMENT_OVERLAP = timedelta(minutes=10)
_NOT_ON_HAND = "received"
_MOVEMENT_ORDER = {"received": 0, "stocked": 1, "dispensed": 2}


def _drain(pages: Generator[list, None, int]) -> tuple[list, int]:
    """Return every record the pages hold and the pager's count of skipped records."""
    records: list = []
    while True:
        try:
            records += next(pages)
        except StopIteration as finished:
            return records, finished.value or 0


# SQLite hands stored times back without an offset; to_utc reads those as the UTC they are.
def _latest_movement_at(db_session: Session, tenant_id: uuid.UUID) -> datetime | None:
    latest = db_session.scalar(select(func.max(SnapshotMovement.at))
                               .where(SnapshotMovement.tenant_id == tenant_id))
    return to_utc(latest) if latest is not None else None


def _stored_movement_ids(db_session: Session, tenant_id: uuid.UUID,
                         since: datetime | None) -> set[str]:
    query = select(SnapshotMovement.movement_id).where(SnapshotMovement.tenant_id == tenant_id)
    if since is not None:
        query = query.where(SnapshotMovement.at >= since)
    return set(db_session.scalars(query))


def sync_inventory_snapshot(*, db_session: Session, settings: Settings, tenant: Tenant) -> dict:
    """Refresh ``tenant``'s inventory snapshot from its System A; return a PHI-free report of
    counts.

    Everything is read from System A first (the catalogue, every container, the movements since
    shortly before the latest one stored), then written in one transaction that replaces the
    catalogue and the containers and adds the new movements. A failure while reading
    (DownstreamError, NotConnected, CredentialUnavailable propagate) stores nothing, so the
    previous snapshot stays whole. Commits its own transaction.
    """
    target = connection_target(db_session=db_session, settings=settings,
                               tenant_id=str(tenant.id), tenant=tenant.slug, product="inventory")
    locations = target.call("location_catalogue")
    containers, containers_skipped = _drain(target.call("iter_container_pages"))
    latest = _latest_movement_at(db_session, tenant.id)
    since = latest - MOVEMENT_OVERLAP if latest is not None else None
    movements, movements_skipped = _drain(target.call("iter_movement_pages", since))

    synced_at = utcnow()
    # Keyed by id: an offset-paged listing that changes while it is read can repeat a record.
    location_rows = {place["code"]: {
        "tenant_id": tenant.id, "code": place["code"], "kind": place["kind"],
        "name": place["name"], "parent": place["parent"], "synced_at": synced_at}
        for place in locations}
    container_rows = {container["container_id"]: {
        "tenant_id": tenant.id, "container_id": container["container_id"],
        "unit": container["location"]["unit"], "ndc11": container["medication"]["ndc11"],
        "status": container["status"], "record": container, "synced_at": synced_at}
        for container in containers}
    try:
        stored = _stored_movement_ids(db_session, tenant.id, since)
        movement_rows = {movement["movement_id"]: {
            "tenant_id": tenant.id, "movement_id": movement["movement_id"],
            "container_id": container_id, "at": to_utc(movement["at"]), "record": movement}
            for container_id, movement in movements if movement["movement_id"] not in stored}
        db_session.execute(delete(SnapshotLocation).where(SnapshotLocation.tenant_id == tenant.id))
        db_session.execute(delete(SnapshotContainer)
                           .where(SnapshotContainer.tenant_id == tenant.id))
        for model, rows in ((SnapshotLocation, location_rows), (SnapshotContainer, container_rows),
                            (SnapshotMovement, movement_rows)):
            if rows:
                db_session.execute(insert(model), list(rows.values()))
        db_session.commit()
    except BaseException:
        db_session.rollback()
        raise
    return {"locations": len(location_rows), "containers": len(container_rows),
            "on_hand": sum(row["status"] != _NOT_ON_HAND for row in container_rows.values()),
            "movements_added": len(movement_rows),
            "records_skipped": containers_skipped + movements_skipped}


def _synced_at(db_session: Session, tenant_id: uuid.UUID) -> datetime | None:
    for model in (SnapshotLocation, SnapshotContainer):
        latest = db_session.scalar(select(func.max(model.synced_at))
                                   .where(model.tenant_id == tenant_id))
        if latest is not None:
            return to_utc(latest)
    return None


def snapshot_origin(*, db_session: Session, tenant_id: uuid.UUID, container_id: str
                    ) -> tuple[dict, datetime] | None:
    """Return a container's canonical origin (its movements oldest first) from the tenant's
    snapshot and when the snapshot was taken; None when the snapshot does not hold it."""
    found = db_session.execute(
        select(SnapshotContainer.record, SnapshotContainer.synced_at)
        .where(SnapshotContainer.tenant_id == tenant_id,
               SnapshotContainer.container_id == container_id)).first()
    if found is None:
        return None
    movements = db_session.scalars(
        select(SnapshotMovement.record)
        .where(SnapshotMovement.tenant_id == tenant_id,
               SnapshotMovement.container_id == container_id)).all()
    # The live chain is in lifecycle order; so is this one when two movements share a second.
    chain = sorted(movements, key=lambda movement: (movement["at"],
                                                    _MOVEMENT_ORDER.get(movement["type"], 3)))
    return {**found.record, "movements": chain}, to_utc(found.synced_at)


def snapshot_on_hand(*, db_session: Session, tenant_id: uuid.UUID, unit: str | None,
                     ndc11: str | None, offset: int, page_size: int
                     ) -> tuple[list[dict], int | None, datetime] | None:
    """Return a page of the containers on hand (not merely received) in the tenant's snapshot,
    by unit and/or medication in container id order, the offset to continue from (None on the
    last page) and when the snapshot was taken; None when the tenant has no snapshot.

    The offset counts every container matching the filters, received ones included, as System
    A's own listing does: a client paging through the live answers can go on from the snapshot
    with the same cursor, and back.
    """
    synced_at = _synced_at(db_session, tenant_id)
    if synced_at is None:
        return None
    conditions = [SnapshotContainer.tenant_id == tenant_id]
    if unit is not None:
        conditions.append(SnapshotContainer.unit == unit)
    if ndc11 is not None:
        conditions.append(SnapshotContainer.ndc11 == ndc11)
    listing = select(
        SnapshotContainer.record, SnapshotContainer.status,
        (func.row_number().over(order_by=SnapshotContainer.container_id) - 1).label("position"),
        func.count().over().label("matching"),
    ).where(*conditions).subquery()
    rows = db_session.execute(
        select(listing.c.record, listing.c.position, listing.c.matching)
        .where(listing.c.position >= offset, listing.c.status != _NOT_ON_HAND)
        .order_by(listing.c.position).limit(page_size)).all()
    next_offset = None
    if len(rows) == page_size and rows[-1].position + 1 < rows[-1].matching:
        next_offset = rows[-1].position + 1
    return [row.record for row in rows], next_offset, synced_at


def snapshot_units(*, db_session: Session, tenant_id: uuid.UUID) -> list[str] | None:
    """Return the canonical codes of the tenant's units (pharmacy excluded) from its snapshot's
    catalogue; None when the tenant has no snapshot."""
    codes = db_session.scalars(
        select(SnapshotLocation.code)
        .where(SnapshotLocation.tenant_id == tenant_id, SnapshotLocation.kind == "unit")
        .order_by(SnapshotLocation.code)).all()
    if codes:
        return list(codes)
    return None if _synced_at(db_session, tenant_id) is None else []
