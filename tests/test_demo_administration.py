"""System B, the eMAR, over real HTTP: native schema, cursor pagination, keys, counters, exports."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections import Counter

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from demo_systems.administration import cursor as emar_cursor
from tests.fixtures.demo import start_demo_system, stop_demo_system
from tests.fixtures.processes import wait_until

NORTH = "NGH"
RIVER = "RVH"
LAKESIDE = "LSC"


def administrations(demo_administration, facility=NORTH, **params):
    response = demo_administration.get(facility, "/administrations", **params)
    assert response.status_code == 200, response.text
    return response.json()


def walk(demo_administration, facility=NORTH, **params) -> list[dict]:
    """Every administration matching ``params``, following next_cursor to the end."""
    records, cursor = [], None
    while True:
        page = administrations(demo_administration, facility, **params,
                               **({"cursor": cursor} if cursor else {}))
        records += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return records


# --- native schema ---------------------------------------------------------------------------

def test_wards_are_spelled_without_the_dash(demo_administration):
    wards = demo_administration.get(NORTH, "/wards").json()["data"]
    codes = [ward["ward"] for ward in wards]
    assert len(codes) >= 20
    assert "ICU3" in codes
    assert all(re.fullmatch(r"[A-Z]+\d+", code) for code in codes)


def test_administrations_come_in_the_native_snake_case_shape(demo_administration):
    page = administrations(demo_administration, page_size=50)
    assert set(page) == {"data", "next_cursor"}
    for record in page["data"]:
        assert set(record) == {"admin_id", "patient", "med", "dose", "route", "given_at", "nurse_id",
                               "note", "container_barcode", "ward"}
        assert set(record["patient"]) == {"full_name", "mrn", "birth_date"}
        assert re.fullmatch(r"MRN\d{8}", record["patient"]["mrn"])
        dt.date.fromisoformat(record["patient"]["birth_date"])
        assert re.fullmatch(r"\d{11}", record["med"]["ndc11"])  # NDC-11, no dashes
        assert record["med"]["description"]
        assert record["dose"]["uom"] in {"mg", "mL", "units", "mcg"}
        assert isinstance(record["dose"]["qty"], (int, float))
        assert record["route"] in {"IV", "PO", "SC", "IM"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["given_at"])  # UTC
        assert re.fullmatch(r"RN\d{5}", record["nurse_id"])
        assert re.fullmatch(r"[A-Z]+\d+", record["ward"])  # ICU3, no dash
        assert record["container_barcode"]


def test_a_site_without_inventory_still_records_scanned_barcodes(demo_administration):
    page = administrations(demo_administration, LAKESIDE, page_size=5)
    assert page["data"] and all(record["container_barcode"] for record in page["data"])


# --- cursor pagination -----------------------------------------------------------------------

def test_following_the_cursor_reads_every_administration_exactly_once(demo_administration):
    truth = demo_administration.admin.ground_truth()["administrations_by_site"]
    for facility, site in ((NORTH, "north-general"), (LAKESIDE, "lakeside-clinic")):
        records = walk(demo_administration, facility, page_size=97)
        ids = [record["admin_id"] for record in records]
        assert len(ids) == len(set(ids)) == truth[site]
        assert ids == sorted(ids)  # stable order by id


def test_page_size_defaults_to_200(demo_administration):
    page = administrations(demo_administration)
    assert len(page["data"]) == 200
    assert page["next_cursor"]


def test_full_pages_carry_a_cursor_and_the_short_last_page_does_not(demo_administration):
    pages, cursor = [], None
    while True:
        page = administrations(demo_administration, RIVER, page_size=1000,
                               **({"cursor": cursor} if cursor else {}))
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(pages) >= 2
    assert all(len(page["data"]) == 1000 and page["next_cursor"] for page in pages[:-1])
    assert 0 < len(pages[-1]["data"]) <= 1000


def test_a_page_that_ends_exactly_at_the_last_record_has_no_cursor(demo_administration):
    everything = walk(demo_administration, LAKESIDE, page_size=1000)
    exact = administrations(demo_administration, LAKESIDE, page_size=len(everything))
    assert exact["next_cursor"] is None
    assert exact["data"] == everything


@pytest.mark.parametrize("params", [
    {"page_size": 1001}, {"page_size": 0}, {"page_size": -5}, {"page_size": "lots"},
    {"cursor": "not-a-cursor"},
    {"cursor": base64.urlsafe_b64encode(b"v1:10:000000000000").decode()},  # forged
    {"since": "2026-11-15"[:7]},
    {"until": "2026-11-15T00:00:00"},  # no UTC offset
    {"wardd": "ICU3"},
])
def test_bad_paging_and_filter_parameters_are_400(demo_administration, params):
    response = demo_administration.get(NORTH, "/administrations", **params)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


@given(st.integers(min_value=0, max_value=10**12))
def test_a_cursor_round_trips_to_the_id_it_continues_after(after_id):
    assert emar_cursor.decode(emar_cursor.encode(after_id)) == after_id


@given(st.text(max_size=40))
def test_arbitrary_text_is_never_taken_for_a_cursor(text):
    with pytest.raises(emar_cursor.BadCursor):
        emar_cursor.decode(text)


def test_a_tampered_cursor_is_400(demo_administration):
    cursor = administrations(demo_administration, page_size=3)["next_cursor"]
    text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    version, after, mac = text.split(":")
    tampered = base64.urlsafe_b64encode(f"{version}:{int(after) + 100}:{mac}".encode()).decode().rstrip("=")
    assert demo_administration.get(NORTH, "/administrations", cursor=tampered).status_code == 400


# --- filters ---------------------------------------------------------------------------------

def test_filters_by_ward_ndc11_and_utc_window_match_the_ground_truth(demo_administration):
    truth = demo_administration.admin.ground_truth(site="north-general")["by_site_ward_ndc11_date"]
    busiest = max(truth, key=lambda row: row["count"])
    since = dt.datetime.fromisoformat(busiest["date"]).replace(tzinfo=dt.UTC)
    records = walk(demo_administration, NORTH, ward=busiest["ward"], ndc11=busiest["ndc11"],
                   since=since.isoformat(), until=(since + dt.timedelta(days=1)).isoformat(), page_size=7)
    assert len(records) == busiest["count"]
    assert sum(record["dose"]["qty"] for record in records) == busiest["dose_total"]
    for record in records:
        assert (record["ward"], record["med"]["ndc11"]) == (busiest["ward"], busiest["ndc11"])
        assert record["given_at"].startswith(busiest["date"])


def test_since_and_until_accept_any_utc_offset(demo_administration):
    in_utc = walk(demo_administration, NORTH, ward="ICU1", since="2026-11-16T05:00:00Z",
                  until="2026-11-17T05:00:00Z", page_size=1000)
    in_new_york = walk(demo_administration, NORTH, ward="ICU1", since="2026-11-16T00:00:00-05:00",
                       until="2026-11-17T00:00:00-05:00", page_size=1000)
    assert in_utc == in_new_york and in_utc


def test_hourly_ground_truth_adds_up_per_drug(demo_administration):
    truth = demo_administration.admin.ground_truth(site="lakeside-clinic")
    per_drug_by_date = Counter()
    for row in truth["by_site_ward_ndc11_date"]:
        per_drug_by_date[row["ndc11"]] += row["count"]
    per_drug_by_hour = Counter()
    for row in truth["by_site_ndc11_hour"]:
        per_drug_by_hour[row["ndc11"]] += row["count"]
    assert per_drug_by_date == per_drug_by_hour


# --- per-site API keys -----------------------------------------------------------------------

def test_a_facilitys_key_works_only_for_that_facility(demo_administration):
    url = f"{demo_administration.base_url}/emar/v1/facilities/{RIVER}/wards"
    assert requests.get(url, headers=demo_administration.auth_headers(RIVER), timeout=10).status_code == 200
    wrong = requests.get(url, headers=demo_administration.auth_headers(RIVER, demo_administration.key(NORTH)),
                         timeout=10)
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthorized"


def test_missing_key_wrong_scheme_or_inventory_key_is_401(demo_administration, demo_inventory):
    url = f"{demo_administration.base_url}/emar/v1/facilities/{NORTH}/wards"
    key = demo_administration.key(NORTH)
    for headers in ({}, {"Authorization": f"Bearer {key}"}, {"X-Api-Key": key},
                    {"Authorization": f"ApiKey {demo_inventory.key('north-general')}"}):
        assert requests.get(url, headers=headers, timeout=10).status_code == 401, headers


def test_unknown_facility_is_404(demo_administration):
    for facility in ("XYZ", "north-general"):
        response = requests.get(f"{demo_administration.base_url}/emar/v1/facilities/{facility}/wards",
                                headers=demo_administration.auth_headers(NORTH), timeout=10)
        assert response.status_code == 404, facility


# --- request counter and admin API -----------------------------------------------------------

def test_counter_counts_every_request_including_rejected_and_faulted_ones(demo_administration,
                                                                          demo_faults_cleared):
    admin = demo_administration.admin
    admin.reset_counts()
    demo_administration.get(NORTH, "/wards")                                              # 200
    requests.get(f"{demo_administration.base_url}/emar/v1/facilities/{NORTH}/wards", timeout=10)  # 401
    requests.get(f"{demo_administration.base_url}/emar/v1/facilities/XYZ/wards", timeout=10)      # 404
    requests.get(f"{demo_administration.base_url}/no/such/path", timeout=10)                      # 404
    demo_administration.get(RIVER, "/administrations", page_size=5000)                    # 400
    admin.set_faults(site=RIVER, down=True)
    assert demo_administration.get(RIVER, "/wards").status_code == 503                     # 503
    admin.faults()
    counts = admin.requests_count()
    assert counts["total"] == 6
    assert counts["by_site"] == {"north-general": 2, "XYZ": 1, "river-valley": 2}
    assert counts["by_endpoint"]["GET /emar/v1/facilities/<facility>/wards"] == 4
    assert counts["by_site_endpoint"]["river-valley"] == {
        "GET /emar/v1/facilities/<facility>/wards": 1,
        "GET /emar/v1/facilities/<facility>/administrations": 1}
    assert admin.reset_counts()["total"] == 0
    assert admin.requests_count() == {"total": 0, "by_site": {}, "by_endpoint": {},
                                      "by_site_endpoint": {}, "recent_request_ids": []}


def test_faults_apply_to_the_administration_system_too(demo_administration, demo_faults_cleared):
    demo_administration.admin.set_faults(site="lakeside-clinic", error_rate=1)
    assert demo_administration.get(LAKESIDE, "/wards").status_code == 500
    assert demo_administration.get(NORTH, "/wards").status_code == 200


def test_admin_api_needs_the_admin_token_except_health(demo_administration):
    base = demo_administration.base_url
    for method, path in (("GET", "/faults"), ("PUT", "/faults"), ("DELETE", "/faults"),
                         ("GET", "/requests"), ("POST", "/requests/reset"),
                         ("GET", "/export/phi"), ("GET", "/export/ground-truth")):
        for headers in ({}, {"X-Admin-Token": "guess"}):
            response = requests.request(method, f"{base}/_admin{path}", headers=headers, timeout=10)
            assert response.status_code == 401, (method, path, headers)
    health = requests.get(f"{base}/_admin/health", timeout=10).json()
    assert health == {"status": "ok", "system": "administration"}


def test_phi_export_lists_the_identifiers_and_notes_served_on_the_wire(demo_administration, demo_inventory):
    exported = demo_administration.admin.export_phi()
    names = {patient["full_name"] for patient in exported["patients"]}
    mrns = {patient["mrn"] for patient in exported["patients"]}
    births = {patient["birth_date"] for patient in exported["patients"]}
    notes = set(exported["notes"])
    for record in administrations(demo_administration, page_size=300)["data"]:
        assert record["patient"]["full_name"] in names
        assert record["patient"]["mrn"] in mrns
        assert record["patient"]["birth_date"] in births
        assert record["note"] is None or record["note"] in notes
    assert any(any(name in note for name in names) for note in notes)
    assert demo_inventory.admin.export_phi() == {"system": "inventory", "patients": [], "notes": []}


def test_access_log_carries_paths_without_query_strings(demo_administration):
    demo_administration.get(NORTH, "/administrations", ward="ICU1", page_size=1)
    log = demo_administration.log_text()
    assert "GET /emar/v1/facilities/NGH/administrations" in log
    assert "ward=ICU1" not in log and "page_size" not in log


# --- change feed (the running world) -----------------------------------------------------------
# On the live world's servers: adding records must not change what the session's eMAR serves.

def changes(server, facility=NORTH, **params) -> dict:
    response = server.get(facility, "/administrations/changes", **params)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_change_feed_serves_newly_charted_doses_in_charting_order_after_a_sequence(
        live_administration):
    before = changes(live_administration, page_size=0)
    assert before["data"] == []
    added = live_administration.admin.add_live_records(NORTH, 25)
    assert added["first_sequence"] == before["head_sequence"] + 1
    assert added["head_sequence"] == before["head_sequence"] + 25

    pages, after = [], before["head_sequence"]
    while True:
        page = changes(live_administration, after_sequence=after, page_size=7)
        if not page["data"]:
            break
        pages.append(page["data"])
        after = page["data"][-1]["sequence"]
    records = [record for page in pages for record in page]

    assert [record["admin_id"] for record in records] == added["ids"]
    sequences = [record["sequence"] for record in records]
    assert sequences == sorted(sequences) and len(set(sequences)) == 25
    assert all(len(page) <= 7 for page in pages)
    assert page["head_sequence"] == added["head_sequence"]
    # Native shape as the plain listing, plus where and when it was charted.
    assert set(records[0]) == set(administrations(live_administration, page_size=1)["data"][0]) \
        | {"sequence", "recorded_at"}


def test_late_charted_doses_enter_the_feed_when_charted_not_when_given(live_administration):
    added = live_administration.admin.add_live_records(RIVER, 60)
    records = changes(live_administration, RIVER, after_sequence=added["first_sequence"] - 1,
                      page_size=100)["data"]

    lags = [dt.datetime.fromisoformat(record["recorded_at"])
            - dt.datetime.fromisoformat(record["given_at"]) for record in records]
    # Given up to six hours before they were charted, yet all after the watermark.
    assert any(lag >= dt.timedelta(hours=1) for lag in lags)
    assert all(lag >= dt.timedelta(0) for lag in lags)
    # A watermark on given_at at the moment of charting would have missed the late ones.
    charted_at = min(dt.datetime.fromisoformat(record["recorded_at"]) for record in records)
    assert any(dt.datetime.fromisoformat(record["given_at"]) < charted_at - dt.timedelta(minutes=30)
               for record in records)


def test_the_feed_finds_its_position_by_charting_time_and_other_facilities_are_apart(
        live_administration):
    head = changes(live_administration, LAKESIDE, page_size=0)["head_sequence"]
    moment = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=1)
    added = live_administration.admin.add_live_records(LAKESIDE, 3)

    page = changes(live_administration, LAKESIDE, recorded_since=moment.isoformat(), page_size=1)
    assert page["data"][0]["sequence"] >= added["first_sequence"] > head
    assert [record["admin_id"][:3] for record in changes(
        live_administration, LAKESIDE, after_sequence=head)["data"]] == ["LSC"] * 3


@pytest.mark.parametrize("params", [{"page_size": 1001}, {"page_size": -1},
                                    {"after_sequence": "x"}, {"recorded_since": "today"},
                                    {"since": "2026-11-15T00:00:00Z"}])
def test_bad_change_feed_queries_are_400(demo_administration, params):
    response = demo_administration.get(NORTH, "/administrations/changes", **params)
    assert response.status_code == 400
    assert response.json()["parameter"] in params


def test_live_records_need_the_admin_token_and_a_known_site(live_administration):
    response = requests.post(f"{live_administration.base_url}/_admin/live/records",
                             json={"site": NORTH, "count": 1}, timeout=10)
    assert response.status_code == 401
    response = requests.post(f"{live_administration.base_url}/_admin/live/records",
                             json={"site": "nowhere", "count": 0}, timeout=10,
                             headers={"X-Admin-Token": live_administration.admin.token})
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"site", "count"}


def test_the_running_world_charts_new_doses_while_the_system_serves(live_demo_data_dir, tmp_path):
    # 600 a minute: one dose every 0.1 s per facility (the local stack uses a few a minute).
    server = start_demo_system("administration", live_demo_data_dir, tmp_path,
                               live_records_per_minute=600)
    try:
        start = changes(server, LAKESIDE, page_size=0)["head_sequence"]
        wait_until(lambda: changes(server, LAKESIDE, page_size=0)["head_sequence"] >= start + 3,
                   timeout=30, description="new doses charted by the running world")
        charted = changes(server, LAKESIDE, after_sequence=start)["data"]
        assert all(record["admin_id"].startswith("LSC-A") for record in charted)
    finally:
        stop_demo_system(server)
