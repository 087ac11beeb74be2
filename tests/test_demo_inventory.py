"""System A, the inventory, over real HTTP: native schema, offset pagination, keys, and faults."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.fixtures.processes import wait_until

NORTH = "north-general"
RIVER = "river-valley"
NO_FAULTS = {"latency_ms": 0, "error_rate": 0.0, "timeout_rate": 0.0, "timeout_seconds": 30.0, "down": False}


def containers(demo_inventory, site=NORTH, **params):
    response = demo_inventory.get(site, "/containers", **params)
    assert response.status_code == 200, response.text
    return response.json()


# --- native schema ---------------------------------------------------------------------------

def test_locations_list_the_pharmacy_and_at_least_20_units_with_their_cabinets(demo_inventory):
    catalogue = demo_inventory.get(NORTH, "/locations").json()
    assert catalogue["facility"] == {"code": "NGH", "name": "North General Hospital",
                                     "timezone": "America/New_York"}
    assert catalogue["pharmacy"]["code"] == "PHARMACY"
    assert len(catalogue["units"]) >= 20
    icu3 = next(unit for unit in catalogue["units"] if unit["code"] == "ICU-3")
    assert [cabinet["code"] for cabinet in icu3["cabinets"]] == ["ICU-3-CAB1", "ICU-3-CAB2"]


def test_containers_come_in_the_native_camel_case_nested_shape(demo_inventory):
    page = containers(demo_inventory, status="dispensed", limit=20)
    for item in page["items"]:
        assert set(item) == {"containerId", "barcode", "drug", "lotNumber", "expiresOn", "location", "status"}
        assert re.fullmatch(r"\d{4,5}-\d{3,4}-\d{1,2}", item["drug"]["ndc"])  # NDC-10 with dashes
        assert set(item["drug"]) == {"ndc", "name", "strength"}
        assert item["location"]["facility"] == "NGH"
        assert re.fullmatch(r"[A-Z]+-\d+", item["location"]["unit"])  # ICU-3, with the dash
        assert item["location"]["cabinet"].startswith(item["location"]["unit"] + "-CAB")
        assert item["status"] == "dispensed"
        dt.date.fromisoformat(item["expiresOn"])


def test_one_container_and_its_history_from_pharmacy_to_unit(demo_inventory):
    item = containers(demo_inventory, status="dispensed", limit=1)["items"][0]
    assert demo_inventory.get(NORTH, f"/containers/{item['containerId']}").json() == item
    history = demo_inventory.get(NORTH, f"/containers/{item['containerId']}/movements").json()["items"]
    assert [movement["type"] for movement in history] == ["receive", "stock", "dispense"]
    assert history[0]["to"] == {"unit": "PHARMACY", "cabinet": None}
    assert history[1]["to"] == {"unit": item["location"]["unit"], "cabinet": item["location"]["cabinet"]}
    assert history[2]["to"]["unit"] == item["location"]["unit"]
    moments = [dt.datetime.fromisoformat(movement["at"]) for movement in history]
    assert moments == sorted(moments)


def test_some_containers_stop_early_in_the_pharmacy_or_a_cabinet(demo_inventory):
    in_pharmacy = containers(demo_inventory, status="received", limit=1)
    stocked = containers(demo_inventory, status="stocked", limit=1)
    assert in_pharmacy["total"] > 0 and stocked["total"] > 0
    history = demo_inventory.get(
        NORTH, f"/containers/{stocked['items'][0]['containerId']}/movements").json()["items"]
    assert [movement["type"] for movement in history] == ["receive", "stock"]


def test_movement_times_are_local_with_the_sites_utc_offset(demo_inventory):
    for site, zone in ((NORTH, "America/New_York"), (RIVER, "America/Chicago")):
        movements = demo_inventory.get(site, "/movements", limit=50).json()["items"]
        for movement in movements:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", movement["at"])
            moment = dt.datetime.fromisoformat(movement["at"])
            assert moment.utcoffset() == moment.astimezone(ZoneInfo(zone)).utcoffset()


def test_unknown_container_is_404(demo_inventory):
    assert demo_inventory.get(NORTH, "/containers/NGH-C99999999").status_code == 404
    assert demo_inventory.get(NORTH, "/containers/not-an-id/movements").status_code == 404


def test_another_sites_container_is_not_found_under_this_site(demo_inventory):
    river_item = containers(demo_inventory, RIVER, limit=1)["items"][0]
    assert demo_inventory.get(NORTH, f"/containers/{river_item['containerId']}").status_code == 404


# --- filters ---------------------------------------------------------------------------------

def test_container_filters_return_only_matching_containers(demo_inventory):
    sample = containers(demo_inventory, status="dispensed", limit=1)["items"][0]
    by_unit = containers(demo_inventory, unit="ICU-3", limit=500)
    assert by_unit["total"] > 0
    assert all(item["location"]["unit"] == "ICU-3" for item in by_unit["items"])
    by_ndc = containers(demo_inventory, ndc=sample["drug"]["ndc"], limit=500)
    assert by_ndc["total"] > 0
    assert all(item["drug"]["ndc"] == sample["drug"]["ndc"] for item in by_ndc["items"])
    by_barcode = containers(demo_inventory, barcode=sample["barcode"])
    assert by_barcode["total"] == 1 and by_barcode["items"] == [sample]


def test_movements_filter_by_destination_unit_type_and_time_window(demo_inventory):
    since = dt.datetime(2026, 11, 15, tzinfo=ZoneInfo("America/New_York"))
    until = since + dt.timedelta(days=2)
    page = demo_inventory.get(NORTH, "/movements", toUnit="ICU-3", type="dispense", limit=500,
                              since=since.isoformat(), until=until.isoformat()).json()
    assert page["total"] == len(page["items"]) > 0
    for movement in page["items"]:
        assert movement["type"] == "dispense"
        assert movement["to"]["unit"] == "ICU-3"
        assert since <= dt.datetime.fromisoformat(movement["at"]) < until
    moments = [dt.datetime.fromisoformat(movement["at"]) for movement in page["items"]]
    assert moments == sorted(moments)


def test_dispenses_per_unit_agree_with_the_reconciliation_ground_truth(demo_inventory):
    truth = demo_inventory.admin.ground_truth(site=NORTH)["reconciliation_by_site_unit"]
    for row in truth[:5]:
        dispensed = demo_inventory.get(NORTH, "/movements", toUnit=row["unit"], type="dispense",
                                       limit=1).json()
        assert dispensed["total"] == row["matched"] + row["dispensed_never_administered"], row["unit"]


@pytest.mark.parametrize("params", [
    {"since": "2026-11-15T00:00:00"},        # no UTC offset
    {"until": "yesterday"},
    {"type": "teleport"},
    {"toUnit": "ICU-3", "colour": "blue"},    # unknown parameter
])
def test_bad_movement_queries_are_400(demo_inventory, params):
    response = demo_inventory.get(NORTH, "/movements", **params)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


# --- offset pagination -----------------------------------------------------------------------

def test_pagination_defaults_to_100_and_reports_the_total(demo_inventory):
    page = containers(demo_inventory)
    assert (page["offset"], page["limit"]) == (0, 100)
    assert len(page["items"]) == 100 < page["total"]


@pytest.mark.parametrize("params", [{"limit": 501}, {"limit": -1}, {"limit": 0}, {"offset": -1},
                                    {"limit": "ten"}])
def test_pagination_out_of_bounds_is_400(demo_inventory, params):
    response = demo_inventory.get(NORTH, "/containers", **params)
    assert response.status_code == 400
    assert response.json()["parameter"] in params


def test_pages_walk_every_container_once_and_the_last_page_is_short(demo_inventory):
    first = containers(demo_inventory, limit=500)
    total = first["total"]
    seen = [item["containerId"] for item in first["items"]]
    offset = 500
    while offset < total:
        page = containers(demo_inventory, limit=500, offset=offset)
        seen += [item["containerId"] for item in page["items"]]
        offset += 500
    assert len(seen) == len(set(seen)) == total
    assert len(page["items"]) == total - (offset - 500) <= 500
    beyond = containers(demo_inventory, limit=500, offset=total)
    assert beyond["items"] == [] and beyond["total"] == total


# --- per-site API keys -----------------------------------------------------------------------

def test_a_sites_key_works_only_for_that_site(demo_inventory):
    url = f"{demo_inventory.base_url}{demo_inventory.site_path(RIVER)}/containers"
    own = requests.get(url, headers=demo_inventory.auth_headers(RIVER), timeout=10)
    other = requests.get(url, headers=demo_inventory.auth_headers(RIVER, demo_inventory.key(NORTH)),
                         timeout=10)
    assert own.status_code == 200
    assert other.status_code == 401
    assert other.json()["error"] == "unauthorized"


def test_missing_or_wrong_key_is_401(demo_inventory, demo_administration):
    url = f"{demo_inventory.base_url}{demo_inventory.site_path(NORTH)}/locations"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"X-Api-Key": "dk_wrong"}, timeout=10).status_code == 401
    emar_key = demo_administration.key(NORTH)
    assert requests.get(url, headers={"X-Api-Key": emar_key}, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": f"ApiKey {demo_inventory.key(NORTH)}"},
                        timeout=10).status_code == 401


def test_unknown_site_and_a_site_without_inventory_are_404(demo_inventory):
    headers = demo_inventory.auth_headers(NORTH)
    for site in ("nowhere", "lakeside-clinic", "NGH"):
        response = requests.get(f"{demo_inventory.base_url}/api/v2/sites/{site}/containers",
                                headers=headers, timeout=10)
        assert response.status_code == 404, site
        assert response.json()["error"] == "not_found"


# --- fault injection -------------------------------------------------------------------------

def test_injected_latency_delays_every_answer(demo_inventory, demo_faults_cleared):
    demo_inventory.admin.set_faults(latency_ms=300)
    started = time.monotonic()
    response = demo_inventory.get(NORTH, "/locations")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_error_rate_one_answers_500_and_half_answers_a_mix(demo_inventory, demo_faults_cleared):
    demo_inventory.admin.set_faults(error_rate=1)
    response = demo_inventory.get(NORTH, "/locations")
    assert response.status_code == 500
    assert response.json()["error"] == "injected_fault"
    demo_inventory.admin.set_faults(error_rate=0.5)
    statuses = {demo_inventory.get(NORTH, "/locations").status_code for _ in range(40)}
    assert statuses == {200, 500}


def test_down_answers_503_to_everything_but_admin(demo_inventory, demo_faults_cleared):
    demo_inventory.admin.set_faults(down=True)
    assert demo_inventory.get(NORTH, "/locations").status_code == 503
    assert requests.get(f"{demo_inventory.base_url}/api/v2/sites/nowhere/x", timeout=10).status_code == 503
    assert demo_inventory.admin.healthy()
    demo_inventory.admin.clear_faults()
    assert demo_inventory.get(NORTH, "/locations").status_code == 200


def test_timeout_fault_hangs_past_the_client_timeout(demo_inventory, demo_faults_cleared):
    demo_inventory.admin.set_faults(timeout_rate=1, timeout_seconds=2)
    with pytest.raises(requests.exceptions.ReadTimeout):
        demo_inventory.get(NORTH, "/locations", timeout=0.5)


def test_a_timed_out_request_still_answers_after_the_hang(demo_inventory, demo_faults_cleared):
    demo_inventory.admin.set_faults(timeout_rate=1, timeout_seconds=0.4)
    started = time.monotonic()
    assert demo_inventory.get(NORTH, "/locations").status_code == 200
    assert time.monotonic() - started >= 0.4


def test_clearing_faults_releases_requests_already_hanging(demo_inventory, demo_faults_cleared):
    demo_inventory.admin.set_faults(timeout_rate=1, timeout_seconds=60)
    outcome = {}

    def call():
        started = time.monotonic()
        outcome["status"] = demo_inventory.get(NORTH, "/locations", timeout=30).status_code
        outcome["seconds"] = time.monotonic() - started

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)
    demo_inventory.admin.clear_faults()
    caller.join(timeout=10)
    assert outcome["status"] == 200
    assert outcome["seconds"] < 5


def test_faults_scoped_to_one_site_leave_the_others_alone(demo_inventory, demo_faults_cleared):
    demo_inventory.admin.set_faults(site=NORTH, down=True)
    assert demo_inventory.get(NORTH, "/locations").status_code == 503
    assert demo_inventory.get(RIVER, "/locations").status_code == 200
    shown = demo_inventory.admin.faults()
    assert shown["sites"][NORTH]["down"] is True
    assert shown["all_sites"]["down"] is False
    demo_inventory.admin.clear_faults(site=NORTH)
    assert demo_inventory.get(NORTH, "/locations").status_code == 200


def test_a_sites_own_plan_overrides_the_all_sites_plan(demo_inventory, demo_faults_cleared):
    demo_inventory.admin.set_faults(error_rate=1)
    demo_inventory.admin.set_faults(site=RIVER, latency_ms=0)
    assert demo_inventory.get(NORTH, "/locations").status_code == 500
    assert demo_inventory.get(RIVER, "/locations").status_code == 200


@pytest.mark.parametrize("body", [
    {"error_rate": 1.5},
    {"timeout_rate": -0.1},
    {"latency_ms": "slow"},
    {"latency_ms": 2.5},
    {"down": "yes"},
    {"site": "atlantis", "down": True},
    {"explode": True},
    ["not", "an", "object"],
])
def test_invalid_fault_plans_are_400_and_change_nothing(demo_inventory, demo_faults_cleared, body):
    response = requests.put(f"{demo_inventory.base_url}/_admin/faults", json=body,
                            headers={"X-Admin-Token": demo_inventory.admin.token}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert demo_inventory.admin.faults() == {"all_sites": NO_FAULTS, "sites": {}}


# --- the legacy API (what a parallel run compares the hub with) -------------------------------

def legacy_origin(demo_inventory, container_id, site=NORTH, **headers):
    return requests.get(f"{demo_inventory.base_url}/legacy/v1/sites/{site}/containers/"
                        f"{container_id}/origin",
                        headers=headers or demo_inventory.auth_headers(site), timeout=10)


def test_the_legacy_origin_has_the_old_shape_and_its_known_quirks(demo_inventory):
    item = containers(demo_inventory, status="dispensed", limit=1)["items"][0]
    history = demo_inventory.get(NORTH, f"/containers/{item['containerId']}/movements").json()["items"]

    response = legacy_origin(demo_inventory, item["containerId"])

    assert response.status_code == 200, response.text
    legacy = response.json()
    assert legacy["container_no"] == item["containerId"]
    assert legacy["ndc"] == item["drug"]["ndc"] and legacy["state"] == "dispensed"
    # Quirk: lot numbers in lower case.
    assert legacy["lot_no"] == item["lotNumber"].lower() != item["lotNumber"]
    # Quirk: the most recent movement is left out.
    assert [move["move_no"] for move in legacy["moves"]] == \
        [movement["movementId"] for movement in history[:-1]]
    assert [move["move_type"] for move in legacy["moves"]] == ["RECEIVE", "STOCK"]
    # Quirk: local times without an offset (the same wall-clock time as the current API's).
    for move, movement in zip(legacy["moves"], history, strict=False):
        moved_at = dt.datetime.fromisoformat(move["moved_at"])
        assert moved_at.tzinfo is None
        assert moved_at == dt.datetime.fromisoformat(movement["at"]).replace(tzinfo=None)


def test_the_legacy_api_needs_the_sites_key_and_knows_only_its_containers(demo_inventory):
    item = containers(demo_inventory, status="dispensed", limit=1)["items"][0]

    assert legacy_origin(demo_inventory, item["containerId"], **{"X-Api-Key": "wrong"}
                         ).status_code == 401
    assert legacy_origin(demo_inventory, "NGH-C99999999").status_code == 404
    # Another site's container is not this site's.
    assert legacy_origin(demo_inventory, item["containerId"], site=RIVER).status_code == 404


def test_the_legacy_stock_lists_the_containers_on_hand_with_lower_case_lots(demo_inventory):
    current = [item for item in containers(demo_inventory, unit="ICU-3", limit=500)["items"]
               if item["status"] != "received"][:7]

    response = requests.get(f"{demo_inventory.base_url}/legacy/v1/sites/{NORTH}/stock",
                            params={"unit": "ICU-3", "limit": 7},
                            headers=demo_inventory.auth_headers(NORTH), timeout=10)

    assert response.status_code == 200, response.text
    stock = response.json()["stock"]
    assert [item["container_no"] for item in stock] == [item["containerId"] for item in current]
    assert [item["lot_no"] for item in stock] == [item["lotNumber"].lower() for item in current]
    assert {item["state"] for item in stock} <= {"stocked", "dispensed"}


# --- change feed (the running world) -----------------------------------------------------------
# On the live world's servers: adding records must not change what the session's inventory serves.

def later_items(items: list[dict], added: dict) -> list[dict]:
    return [item for item in items if item["movementId"] in set(added["ids"])]


def movement_changes(server, site=NORTH, **params) -> dict:
    response = server.get(site, "/movements/changes", **params)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_change_feed_serves_new_movements_in_scanning_order_after_a_sequence(live_inventory):
    head = movement_changes(live_inventory, limit=0)["headSequence"]
    earlier = live_inventory.admin.add_live_records(NORTH, 6)
    # A container moves at most once a second: the next containers move on a second later.
    moment = time.time()
    wait_until(lambda: time.time() >= moment + 1.1, timeout=5, description="the next second")
    later = live_inventory.admin.add_live_records(NORTH, 6)
    added = {"ids": earlier["ids"] + later["ids"], "head_sequence": later["head_sequence"]}

    items, after = [], head
    while True:
        page = movement_changes(live_inventory, afterSequence=after, limit=5)
        if not page["items"]:
            break
        items += page["items"]
        after = page["items"][-1]["sequence"]

    assert [item["movementId"] for item in items] == added["ids"]
    assert page["headSequence"] == added["head_sequence"]
    assert [item["sequence"] for item in items] == list(range(head + 1, head + 13))
    # Containers move on through their chain: received, then stocked, then dispensed.
    journeys: dict[str, list[str]] = {}
    for item in items:
        journeys.setdefault(item["containerId"], []).append(item["type"])
        assert set(item) >= {"movementId", "containerId", "type", "at", "from", "to", "sequence",
                             "recordedAt", "container"}
        assert item["container"]["containerId"] == item["containerId"]
    # (Containers received before this test may move on in it: a journey may start later on.)
    chain = ["receive", "stock", "dispense"]
    assert all(journey == chain[chain.index(journey[0]):][:len(journey)]
               for journey in journeys.values())
    assert "stock" in {item["type"] for item in later_items(items, later)}
    # Each container's own history agrees with the feed.
    for container, journey in journeys.items():
        history = live_inventory.get(NORTH, f"/containers/{container}/movements").json()["items"]
        assert [movement["type"] for movement in history][-len(journey):] == journey


def test_the_running_world_leaves_the_seeded_containers_as_seeded(live_inventory):
    seeded = containers(live_inventory, RIVER, status="received", limit=1)
    live_inventory.admin.add_live_records(RIVER, 9)
    assert containers(live_inventory, RIVER, barcode=seeded["items"][0]["barcode"])["items"] \
        == seeded["items"]


@pytest.mark.parametrize("params", [{"limit": 501}, {"afterSequence": -1},
                                    {"recordedSince": "2026-11-15T00:00:00"},
                                    {"since": "2026-11-15T00:00:00Z"}])
def test_bad_change_feed_queries_are_400(demo_inventory, params):
    response = demo_inventory.get(NORTH, "/movements/changes", **params)
    assert response.status_code == 400
    assert response.json()["parameter"] in params
