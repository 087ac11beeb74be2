"""The inventory snapshot: the sync copies System A's catalogue, containers and movements into
the hub, all or nothing, and origin and inventory lookups answer from that copy while System A
is down and nothing is cached.

Against the demo systems over real HTTP and the session's real database; failures come from the
demo systems' fault injection, nothing is mocked.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, select, update

from app.canonical.times import format_utc
from app.connectors.inventory import NATIVE_PAGE_LIMIT
from app.connectors.resilience import DownstreamUnavailable
from app.jobs.service import known_units
from app.observability import metrics
from app.snapshots.models import SnapshotContainer, SnapshotLocation, SnapshotMovement
from app.snapshots.service import (
    snapshot_on_hand,
    snapshot_origin,
    snapshot_units,
    sync_inventory_snapshot,
)
from app.tenants.service import get_tenant_by_slug
from tests.fixtures.phi import leaks_in
from tests.fixtures.processes import wait_until

pytestmark = pytest.mark.usefixtures("clean_lookup_state", "no_snapshots")

SITE = "north-general"
OTHER_SITE = "river-valley"
EMAR = "north-general-emar"  # System B's client: reads inventory (System A)
INVENTORY = "north-general-inventory"  # System A's client: reads administrations (System B)
MOVEMENTS_ENDPOINT = "GET /api/v2/sites/<site>/movements"
SNAPSHOT_TABLES = (SnapshotLocation, SnapshotContainer, SnapshotMovement)


@pytest.fixture
def hub(hub_app, demo_tenants):
    return hub_app.extensions["hub"]


@pytest.fixture
def db(hub):
    """A database session of the test's own, apart from the one the API's requests use."""
    session = hub.database.new_session()
    yield session
    session.close()


@pytest.fixture
def no_snapshots(hub_app):
    """No tenant has a snapshot before or after the test."""
    def empty() -> None:
        with hub_app.extensions["hub"].database.new_session() as session:
            for model in SNAPSHOT_TABLES:
                session.execute(delete(model))
            session.commit()

    empty()
    yield
    empty()


@pytest.fixture
def quick_settings(hub):
    """The session's settings with two attempts per downstream read: failures come sooner."""
    return replace(hub.settings, hub_downstream_attempts=2)


def tenant_of(db, slug: str = SITE):
    return get_tenant_by_slug(db_session=db, slug=slug)


def sync(hub, db, slug: str = SITE, settings=None) -> dict:
    return sync_inventory_snapshot(db_session=db, settings=settings or hub.settings,
                                   tenant=tenant_of(db, slug))


def total(demo_inventory, path: str, site: str = SITE, **filters) -> int:
    """How many records System A itself says it holds at ``path``."""
    return demo_inventory.get(site, path, limit=1, **filters).json()["total"]


def first_container(demo_inventory, site: str = SITE, **filters) -> str:
    return demo_inventory.get(site, "/containers", limit=1, **filters).json()["items"][0][
        "containerId"]


def stored_snapshot(db, tenant_id) -> dict:
    """Every snapshot row of a tenant, row ids and sync times included."""
    db.expire_all()
    return {model.__tablename__: sorted(
        json.dumps({column.name: getattr(row, column.name)
                    for column in model.__table__.columns}, default=str, sort_keys=True)
        for row in db.scalars(select(model).where(model.tenant_id == tenant_id)))
        for model in SNAPSHOT_TABLES}


def snapshot_dump(db) -> str:
    """Every row of every snapshot table, as one text."""
    return "\n".join(json.dumps({column.name: getattr(row, column.name)
                                 for column in model.__table__.columns}, default=str)
                     for model in SNAPSHOT_TABLES for row in db.scalars(select(model)))


def count_rows(db, model, tenant_id) -> int:
    return db.scalar(select(func.count()).select_from(model).where(model.tenant_id == tenant_id))


def walk_inventory(api, headers, query: str) -> list[tuple[dict, str]]:
    """Every page of ``/v1/inventory?{query}``, with its X-Cache, following the cursors."""
    pages, url = [], f"/v1/inventory?{query}"
    while url:
        response = api.get(url, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        pages.append((response.json, response.headers["X-Cache"]))
        cursor = response.json["next_cursor"]
        url = f"/v1/inventory?{query}&cursor={cursor}" if cursor else None
    return pages


def forget_cached_lookups(hub) -> None:
    keys = list(hub.redis.scan_iter(match="customer:*"))
    if keys:
        hub.redis.delete(*keys)


def snapshot_lookups(resource: str) -> float:
    return metrics.CACHE_LOOKUPS.labels(resource=resource, result="snapshot")._value.get()


# --- the sync -------------------------------------------------------------------------------

def test_sync_stores_the_catalogue_and_every_container_system_a_serves(hub, db, demo_inventory):
    report = sync(hub, db)

    tenant_id = tenant_of(db).id
    catalogue = demo_inventory.get(SITE, "/locations").json()
    cabinets = {cabinet["code"]: unit["code"] for unit in catalogue["units"]
                for cabinet in unit["cabinets"]}
    containers = total(demo_inventory, "/containers")
    received = total(demo_inventory, "/containers", status="received")
    assert report == {"locations": 1 + len(catalogue["units"]) + len(cabinets),
                      "containers": containers, "on_hand": containers - received,
                      "movements_added": total(demo_inventory, "/movements"),
                      "records_skipped": 0}
    assert snapshot_units(db_session=db, tenant_id=tenant_id) == sorted(
        unit["code"] for unit in catalogue["units"])
    stored_cabinets = dict(db.execute(
        select(SnapshotLocation.code, SnapshotLocation.parent)
        .where(SnapshotLocation.tenant_id == tenant_id, SnapshotLocation.kind == "cabinet")).all())
    assert stored_cabinets == cabinets
    assert count_rows(db, SnapshotContainer, tenant_id) == containers
    assert count_rows(db, SnapshotMovement, tenant_id) == report["movements_added"]


def test_snapshot_origin_is_the_live_origin_answer(api, tokens, hub, db, demo_inventory):
    sync(hub, db)
    tenant_id = tenant_of(db).id

    for status in ("received", "stocked", "dispensed"):
        container_id = first_container(demo_inventory, status=status)
        live = api.get(f"/v1/containers/{container_id}/origin", headers=tokens.headers(EMAR))
        assert (live.status_code, live.headers["X-Cache"]) == (200, "MISS")

        origin, _synced_at = snapshot_origin(db_session=db, tenant_id=tenant_id,
                                             container_id=container_id)

        assert origin == live.json


def test_second_sync_replaces_the_containers_and_adds_no_duplicate_movements(
        hub, db, demo_inventory):
    first = sync(hub, db)
    tenant_id = tenant_of(db).id
    changed = first_container(demo_inventory, status="dispensed")
    db.execute(update(SnapshotContainer).where(SnapshotContainer.tenant_id == tenant_id,
                                               SnapshotContainer.container_id == changed)
               .values(status="received"))
    db.add(SnapshotContainer(id=uuid.uuid4(), tenant_id=tenant_id, container_id="NGH-C99999999",
                             unit="ICU-1", ndc11="00000000000", status="stocked", record={},
                             synced_at=datetime(2026, 1, 1, tzinfo=UTC)))
    latest = db.scalars(select(SnapshotMovement.movement_id)
                        .where(SnapshotMovement.tenant_id == tenant_id)
                        .order_by(SnapshotMovement.at.desc()).limit(1)).one()
    db.execute(delete(SnapshotMovement).where(SnapshotMovement.movement_id == latest))
    db.commit()

    second = sync(hub, db)

    assert second == {**first, "movements_added": 1}
    assert count_rows(db, SnapshotMovement, tenant_id) == total(demo_inventory, "/movements")
    stored = dict(db.execute(select(SnapshotContainer.container_id, SnapshotContainer.status)
                             .where(SnapshotContainer.tenant_id == tenant_id)).all())
    assert len(stored) == total(demo_inventory, "/containers")
    assert "NGH-C99999999" not in stored
    assert stored[changed] == "dispensed"
    assert db.scalar(select(func.count(func.distinct(SnapshotContainer.synced_at)))
                     .where(SnapshotContainer.tenant_id == tenant_id)) == 1


def test_system_a_down_makes_the_sync_raise_and_keeps_the_previous_snapshot(
        hub, db, demo_inventory, quick_settings):
    sync(hub, db)
    tenant_id = tenant_of(db).id
    before = stored_snapshot(db, tenant_id)
    demo_inventory.admin.set_faults(site=SITE, down=True)

    with pytest.raises(DownstreamUnavailable):
        sync(hub, db, settings=quick_settings)

    assert stored_snapshot(db, tenant_id) == before


def test_system_a_failing_part_way_stores_nothing(hub, db, demo_inventory, quick_settings):
    sync(hub, db)
    tenant_id = tenant_of(db).id
    # Without stored movements the next sync asks for all of them, over several pages.
    db.execute(delete(SnapshotMovement).where(SnapshotMovement.tenant_id == tenant_id))
    db.commit()
    before = stored_snapshot(db, tenant_id)
    assert total(demo_inventory, "/movements") > 2 * NATIVE_PAGE_LIMIT
    demo_inventory.admin.reset_counts()
    demo_inventory.admin.set_faults(site=SITE, latency_ms=200)

    def movements_asked() -> bool:
        counts = demo_inventory.admin.requests_count()["by_site_endpoint"].get(SITE, {})
        return counts.get(MOVEMENTS_ENDPOINT, 0) >= 1

    def sync_apart() -> dict:
        with hub.database.new_session() as session:
            return sync(hub, session, settings=quick_settings)

    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(sync_apart)
        # The catalogue and every container are read by now; the first movement page is on
        # its way and is still served, the next ones are not.
        wait_until(movements_asked, timeout=30, description="the sync reading movements")
        demo_inventory.admin.set_faults(site=SITE, down=True)
        with pytest.raises(DownstreamUnavailable):
            running.result(timeout=60)

    assert stored_snapshot(db, tenant_id) == before


def test_a_tenants_snapshot_holds_only_its_own_system_a(hub, db, demo_inventory):
    sync(hub, db)
    sync(hub, db, OTHER_SITE)
    tenant_id = tenant_of(db).id
    other_container = first_container(demo_inventory, OTHER_SITE, status="stocked")

    assert snapshot_origin(db_session=db, tenant_id=tenant_id,
                           container_id=other_container) is None
    items, _next_offset, _synced_at = snapshot_on_hand(
        db_session=db, tenant_id=tenant_id, unit=None, ndc11=None, offset=0, page_size=500)
    assert items and all(item["container_id"].startswith("NGH-") for item in items)
    for slug, facility in ((SITE, "NGH-"), (OTHER_SITE, "RVH-")):
        stored = db.scalars(select(SnapshotContainer.container_id)
                            .where(SnapshotContainer.tenant_id == tenant_of(db, slug).id)).all()
        assert stored and all(container_id.startswith(facility) for container_id in stored)


def test_another_tenants_snapshot_is_never_read(api, tokens, hub, db, demo_inventory):
    sync(hub, db, OTHER_SITE)
    other_container = first_container(demo_inventory, OTHER_SITE, status="stocked")
    demo_inventory.admin.set_faults(down=True)
    headers = tokens.headers(EMAR)

    origin = api.get(f"/v1/containers/{other_container}/origin", headers=headers)
    inventory = api.get("/v1/inventory?page_size=5", headers=headers)

    assert origin.status_code == 503
    assert inventory.status_code == 503
    assert snapshot_on_hand(db_session=db, tenant_id=tenant_of(db).id, unit=None, ndc11=None,
                            offset=0, page_size=5) is None


# --- lookups falling back to the snapshot ---------------------------------------------------

def test_origin_lookup_answers_from_the_snapshot_while_system_a_is_down(
        api, tokens, hub, db, demo_inventory):
    headers = tokens.headers(EMAR)
    container_id = first_container(demo_inventory, status="dispensed")
    live = api.get(f"/v1/containers/{container_id}/origin", headers=headers)
    assert (live.status_code, live.headers["X-Cache"]) == (200, "MISS")
    sync(hub, db)
    _origin, synced_at = snapshot_origin(db_session=db, tenant_id=tenant_of(db).id,
                                         container_id=container_id)
    forget_cached_lookups(hub)
    demo_inventory.admin.set_faults(site=SITE, down=True)
    answered_before = snapshot_lookups("container_origin")

    response = api.get(f"/v1/containers/{container_id}/origin", headers=headers)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["X-Cache"] == "SNAPSHOT"
    assert response.headers["X-Hub-Synced-At"] == format_utc(synced_at)
    assert response.json == live.json
    assert snapshot_lookups("container_origin") == answered_before + 1
    fhir = api.get(f"/v1/containers/{container_id}/origin",
                   headers={**headers, "Accept": "application/fhir+json"})
    assert (fhir.status_code, fhir.headers["X-Cache"]) == (200, "SNAPSHOT")
    assert list(hub.redis.scan_iter(match="customer:*")) == []  # a snapshot answer is not cached


def test_inventory_pages_from_the_snapshot_are_the_live_pages(api, tokens, hub, db,
                                                              demo_inventory):
    headers = tokens.headers(EMAR)
    query = "unit=ICU-1&page_size=7"
    live = walk_inventory(api, headers, query)
    assert len(live) > 2 and {cache for _page, cache in live} == {"MISS"}
    sync(hub, db)
    forget_cached_lookups(hub)
    demo_inventory.admin.set_faults(site=SITE, down=True)

    from_snapshot = walk_inventory(api, headers, query)

    assert [page for page, _cache in from_snapshot] == [page for page, _cache in live]
    assert {cache for _page, cache in from_snapshot} == {"SNAPSHOT"}


def test_a_live_cursor_goes_on_from_the_snapshot(api, tokens, hub, db, demo_inventory):
    headers = tokens.headers(EMAR)
    live = walk_inventory(api, headers, "page_size=50")
    sync(hub, db)
    forget_cached_lookups(hub)
    demo_inventory.admin.set_faults(site=SITE, down=True)

    cursor = live[1][0]["next_cursor"]
    response = api.get(f"/v1/inventory?page_size=50&cursor={cursor}", headers=headers)

    assert response.status_code == 200
    assert response.headers["X-Cache"] == "SNAPSHOT"
    assert response.json == live[2][0]


def test_lookups_without_a_snapshot_answer_503_as_before(api, tokens, demo_inventory):
    demo_inventory.admin.set_faults(site=SITE, down=True)
    headers = tokens.headers(EMAR)
    container_id = "NGH-C00000001"

    for url in (f"/v1/containers/{container_id}/origin", "/v1/inventory?page_size=5"):
        response = api.get(url, headers=headers)

        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.json["type"].endswith("/downstream-unavailable")
        assert "X-Cache" not in response.headers


def test_a_container_missing_from_the_snapshot_answers_503(api, tokens, hub, db,
                                                         demo_inventory):
    sync(hub, db)
    demo_inventory.admin.set_faults(site=SITE, down=True)

    response = api.get("/v1/containers/NGH-C99999999/origin", headers=tokens.headers(EMAR))

    assert response.status_code == 503
    assert "X-Cache" not in response.headers


def test_administrations_do_not_answer_from_the_inventory_snapshot(
        api, tokens, hub, db, demo_administration):
    sync(hub, db)
    demo_administration.admin.set_faults(site=SITE, down=True)

    response = api.get("/v1/administrations?page_size=5", headers=tokens.headers(INVENTORY))

    assert response.status_code == 503
    assert "X-Cache" not in response.headers


# --- PHI ------------------------------------------------------------------------------------

def test_snapshot_tables_hold_no_seeded_phi(hub, db, seeded_identifiers):
    sync(hub, db)
    sync(hub, db, OTHER_SITE)

    dump = snapshot_dump(db)

    assert dump.count("\n") > 1000
    assert leaks_in(dump, seeded_identifiers) == []


def test_job_planning_uses_the_snapshot_catalogue_while_system_a_is_down(
        hub, db, demo_inventory):
    # The unit list a dose_reconciliation job fans out over comes from System A.
    sync(hub, db)
    tenant = tenant_of(db)
    units = snapshot_units(db_session=db, tenant_id=tenant.id)
    forget_cached_lookups(hub)
    demo_inventory.admin.set_faults(site=SITE, down=True)

    def catalogue() -> list[str]:
        return known_units(db_session=db, redis_client=hub.redis, settings=hub.settings,
                           tenant=tenant, job_type="dose_reconciliation")

    assert catalogue() == units
    # Without a snapshot (and nothing cached) the failure reaches the caller (a 503 there).
    for model in SNAPSHOT_TABLES:
        db.execute(delete(model))
    db.commit()
    with pytest.raises(DownstreamUnavailable):
        catalogue()
