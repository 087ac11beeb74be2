"""Cache warming: lookups are counted per tenant, and a warming run refreshes the most asked
ones through the real lookup path (real System A and B over HTTP, real Redis), counts what it
could not refresh, and fails visibly when a system is down."""

from __future__ import annotations

import json
import uuid

import pytest

from app.lookups import hot
from app.syncs import service
from app.syncs.models import SyncRun

pytestmark = pytest.mark.usefixtures("clean_lookup_state", "quiet_schedules")

EMAR = "north-general-emar"            # reads inventory (System A)
INVENTORY = "north-general-inventory"  # reads administrations (System B)
TENANT = "north-general"


def warm(hub) -> SyncRun:
    sync_id = service.sync_id_for(db_session=hub.database.session, kind="cache_warming",
                                  owner=TENANT)
    service.update_sync(db_session=hub.database.session, settings=hub.settings,
                        schedule_id=sync_id, tenant_id=None, actor="test", enabled=True,
                        schedule="86400")
    outcome = service.run_sync(db_session=hub.database.session, redis_client=hub.redis,
                               settings=hub.settings, schedule_id=sync_id)
    return hub.database.session.get(SyncRun, uuid.UUID(outcome["run_id"]))


def cached_entries(hub) -> dict[str, float]:
    client = hub.redis
    return {key: json.loads(client.get(key))["stored_at"]
            for key in client.scan_iter(match=f"customer:{TENANT}:*")}


def test_lookups_are_counted_per_tenant_most_asked_first(api, tokens, hub):
    for _ in range(3):
        api.get("/v1/inventory?unit=ICU-1&page_size=5", headers=tokens.headers(EMAR))
    api.get("/v1/administrations?unit=ICU-2&page_size=2", headers=tokens.headers(INVENTORY))
    api.get("/v1/inventory?unit=ICU-1&page_size=5",
            headers=tokens.headers("river-valley-emar"))

    ranked = hot.hottest(hub.redis, TENANT, 10)

    assert [(entry["lookup"], entry["consumer"]) for entry in ranked] == [
        ("inventory", "administration"), ("administrations", "inventory")]
    assert ranked[0]["args"] == {"unit": "ICU-1", "ndc11": None, "cursor": None,
                                 "page_size": 5}
    assert len(hot.hottest(hub.redis, "river-valley", 10)) == 1


def test_a_warming_run_refreshes_the_hot_lookups_and_the_next_client_gets_a_hit(
        api, tokens, hub, demo_inventory, demo_administration):
    assert api.get("/v1/inventory?unit=ICU-1&page_size=5",
                   headers=tokens.headers(EMAR)).headers["X-Cache"] == "MISS"
    since = "2026-11-01T00:00:00Z"
    assert api.get(f"/v1/administrations?unit=ICU-2&since={since}&page_size=2",
                   headers=tokens.headers(INVENTORY)).status_code == 200
    before = cached_entries(hub)
    calls_before = (demo_inventory.admin.requests_count()["total"]
                    + demo_administration.admin.requests_count()["total"])

    run = warm(hub)

    assert run.outcome == "succeeded", run.error
    assert run.report == {"candidates": 2, "refreshed": 2, "unavailable": 0, "not_found": 0,
                          "refused": 0}
    after = cached_entries(hub)
    assert set(after) == set(before)
    assert all(after[key] > before[key] for key in before)
    assert (demo_inventory.admin.requests_count()["total"]
            + demo_administration.admin.requests_count()["total"]) > calls_before
    # Counts halve after each run; the run's own lookups are not counted.
    scores = dict(hub.redis.zrange(hot.HOT_KEY.format(tenant=TENANT), 0, -1, withscores=True))
    assert sorted(scores.values()) == [0.5, 0.5]
    assert api.get("/v1/inventory?unit=ICU-1&page_size=5",
                   headers=tokens.headers(EMAR)).headers["X-Cache"] == "HIT"


def test_a_lookup_that_no_longer_exists_is_counted_not_failed(api, tokens, hub):
    missing = api.get("/v1/containers/NGH-C99999999/origin", headers=tokens.headers(EMAR))
    assert missing.status_code == 404

    run = warm(hub)

    assert run.outcome == "succeeded"
    assert run.report["not_found"] == 1 and run.report["refreshed"] == 0


def test_warming_with_a_system_down_fails_visibly_and_keeps_the_cached_answers(
        api, tokens, hub, demo_inventory):
    url = "/v1/inventory?unit=ICU-3&page_size=5"
    assert api.get(url, headers=tokens.headers(EMAR)).status_code == 200
    before = cached_entries(hub)
    demo_inventory.admin.set_faults(down=True, site=TENANT)

    run = warm(hub)

    assert run.outcome == "failed"
    assert run.error == "1 of 1 hot lookups could not be refreshed: their system is unavailable."
    assert cached_entries(hub) == before
    view = service.get_sync(db_session=hub.database.session, settings=hub.settings,
                            schedule_id=str(run.schedule_id), tenant_id=None)
    assert view["status"] == "failing" and view["consecutive_failures"] == 1


def test_many_one_off_lookups_between_runs_keep_the_set_bounded(hub):
    for number in range(hot.TRIM_TO + 50):
        hot.record_use(hub.redis, tenant=TENANT, lookup="inventory", consumer="administration",
                       args={"unit": None, "ndc11": None, "cursor": None, "page_size": number})
    for _ in range(3):
        hot.record_use(hub.redis, tenant=TENANT, lookup="container_origin",
                       consumer="administration", args={"container_id": "NGH-C00000001"})

    key = hot.HOT_KEY.format(tenant=TENANT)
    assert hub.redis.zcard(key) <= hot.TRIM_TO
    assert hot.hottest(hub.redis, TENANT, 1)[0]["lookup"] == "container_origin"
