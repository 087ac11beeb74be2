"""The dispense_reconciliation job on a real worker: what the pharmacy dispensed (System C,
received over HL7 by the hub), what the eMAR charted (System B) and what left inventory
(System A), per unit and medication, against counts taken independently from the demo world."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import datetime, timedelta

import pytest

from demo_systems.pharmacy import messages as pharmacy_messages
from demo_systems.pharmacy import store as pharmacy_store
from tests.fixtures.jobs import finished, submit
from tests.fixtures.pharmacy import PHARMACY_FACILITY, PHARMACY_SITE
from tests.fixtures.problems import assert_problem

pytestmark = pytest.mark.usefixtures("clean_lookup_state", "celery_worker")

JOB = "dispense_reconciliation"


@pytest.fixture(scope="module")
def pharmacy_truth(demo_data_dir, demo_pharmacy_received) -> dict:
    """North-general's three-way truth, computed at seed time from the three systems' databases."""
    truth = json.loads((demo_data_dir / "ground-truth.json").read_text())
    rows = [row for row in truth["pharmacy"]["dispensing_by_site_unit_ndc11"]
            if row["site"] == PHARMACY_SITE]
    return {"rows": rows, "window_start": truth["administration"]["window_start"],
            "window_end": truth["administration"]["window_end"]}


def whole_world(truth) -> dict:
    """A window holding every dispense: orders are filled up to an hour, and cabinets stocked
    up to a few hours, before the first dose of the world."""
    since = datetime.fromisoformat(truth["window_start"]) - timedelta(days=1)
    return {"since": since.isoformat(), "until": truth["window_end"]}


def test_the_listener_accepted_the_demo_stream_and_refused_its_malformed_messages(
        demo_data_dir, demo_pharmacy_received):
    connection = pharmacy_store.open_read_only(demo_data_dir / pharmacy_store.FILE_NAME)
    try:
        kinds = Counter(message.kind for _, message in pharmacy_messages.stream(
            connection, facilities=(PHARMACY_FACILITY,)))
    finally:
        connection.close()
    malformed = sum(kinds[kind] for kind in pharmacy_messages.MALFORMED_KINDS)

    assert demo_pharmacy_received["sent"] == sum(kinds.values())
    assert demo_pharmacy_received["given_up"] == 0
    assert demo_pharmacy_received["AA"] == sum(kinds.values()) - malformed
    assert demo_pharmacy_received["AE"] + demo_pharmacy_received["AR"] == malformed > 0


def test_the_hub_stored_none_of_the_streamed_patients_identifiers(hub_app, demo_data_dir,
                                                                  demo_pharmacy_received):
    from sqlalchemy import select

    from app.pharmacy.models import (
        Hl7Message,
        PharmacyAdministration,
        PharmacyDispense,
        PharmacyOrder,
    )

    with sqlite3.connect(demo_data_dir / pharmacy_store.FILE_NAME) as pharmacy:
        identifiers = set()
        for mrn, first, last, birth_date in pharmacy.execute(
                "SELECT mrn, first_name, last_name, birth_date FROM patients WHERE facility = ?",
                (PHARMACY_FACILITY,)):
            identifiers |= {mrn, f"{last}^{first}", f"{first} {last}", birth_date.replace("-", "")}
    with hub_app.app_context():
        session = hub_app.extensions["hub"].database.session
        stored = [repr(row.__dict__) for model in (Hl7Message, PharmacyOrder, PharmacyDispense,
                                                   PharmacyAdministration)
                  for row in session.scalars(select(model))]
        session.rollback()

    assert len(stored) > demo_pharmacy_received["AA"]
    assert sorted(value for value in identifiers if any(value in row for row in stored)) == []


def test_three_way_counts_per_unit_and_medication_match_the_ground_truth(
        api, tokens, pharmacy_truth):
    response = submit(api, tokens, {"type": JOB, "params": {"window": whole_world(pharmacy_truth)}})
    assert response.status_code == 202, response.json

    job = finished(api, tokens, response.json["id"], timeout=180)

    assert job["status"] == "succeeded", job
    expected = {(row["unit"], row["ndc11"]): (row["dispenses"], row["administrations"],
                                              row["inventory_dispenses"])
                for row in pharmacy_truth["rows"]}
    got = {(unit["unit"], row["medication"]): (row["pharmacy_dispenses"], row["administrations"],
                                               row["inventory_dispenses"])
           for unit in job["result"]["units"] for row in unit["medications"]}
    assert got == expected
    totals = job["result"]["totals"]
    assert totals["pharmacy_dispenses"] == sum(count for count, _, _ in expected.values())
    assert totals["administrations"] == sum(count for _, count, _ in expected.values())


def test_flags_name_where_the_three_systems_disagree(api, tokens, pharmacy_truth):
    job = finished(api, tokens, submit(api, tokens, {"type": JOB, "params": {
        "window": whole_world(pharmacy_truth)}}).json["id"], timeout=180)

    flags = Counter()
    for unit in job["result"]["units"]:
        for row in unit["medications"]:
            expected = set()
            if row["pharmacy_dispenses"] > row["administrations"]:
                expected.add("pharmacy_above_charted")
            if row["administrations"] > row["pharmacy_dispenses"]:
                expected.add("charted_above_pharmacy")
            if row["inventory_dispenses"] != row["pharmacy_dispenses"]:
                expected.add("inventory_differs_from_pharmacy")
            assert set(row["flags"]) == expected
            flags.update(row["flags"])
    # The seeded discrepancies show up: doses dispensed and never charted, and the reverse.
    uncharted = sum(row["dispensed_never_charted"] for row in pharmacy_truth["rows"])
    undispensed = sum(row["charted_never_dispensed"] for row in pharmacy_truth["rows"])
    assert uncharted > 0 and undispensed > 0
    assert flags["pharmacy_above_charted"] > 0 and flags["charted_above_pharmacy"] > 0
    assert job["result"]["totals"]["flagged"] == sum(
        1 for unit in job["result"]["units"] for row in unit["medications"] if row["flags"])


def test_small_counts_are_suppressed_with_their_quantities(api, tokens, pharmacy_truth):
    job = finished(api, tokens, submit(api, tokens, {"type": JOB, "params": {
        "window": whole_world(pharmacy_truth), "suppress_below": 5}}).json["id"], timeout=180)

    assert job["status"] == "succeeded", job
    rows = [row for unit in job["result"]["units"] for row in unit["medications"]]
    hidden = [row for row in rows if row["pharmacy_dispenses"] == "<5"]
    assert hidden and all(row["pharmacy_quantity"] is None for row in hidden)


def test_tenant_without_the_pharmacy_gets_403(api, tokens, pharmacy_truth):
    response = submit(api, tokens, {"type": JOB, "params": {"window": whole_world(pharmacy_truth)}},
                      client="lakeside-clinic-operator")

    assert_problem(response, 403)
    assert response.json["type"].endswith("/not-entitled")


def test_tenant_whose_pharmacy_entitlement_is_revoked_gets_403(api, tokens, hub_app, pharmacy_truth):
    from app.entitlements.service import grant_entitlement, revoke_entitlement
    from app.tenants.service import get_product, get_tenant_by_slug

    def set_pharmacy(granted: bool) -> None:
        with hub_app.app_context():
            session = hub_app.extensions["hub"].database.session
            tenant = get_tenant_by_slug(db_session=session, slug="river-valley")
            (grant_entitlement if granted else revoke_entitlement)(
                db_session=session, tenant=tenant, product=get_product(db_session=session,
                                                                       code="pharmacy"))
            session.commit()

    set_pharmacy(False)
    try:
        response = submit(api, tokens, {"type": JOB, "params": {
            "window": whole_world(pharmacy_truth)}}, client="river-valley-operator")
    finally:
        set_pharmacy(True)

    assert_problem(response, 403)
    assert response.json["type"].endswith("/not-entitled")


@pytest.mark.parametrize("params, field", [
    ({"window": {"since": "2026-09-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}}, "window"),
    ({"window": {"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"},
      "medication": "97031-6054-6"}, "medication"),
    ({"window": {"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"},
      "units": ["ICU-99"]}, "units"),
    ({}, "window"),
])
def test_bad_parameters_are_422(api, tokens, params, field):
    response = submit(api, tokens, {"type": JOB, "params": params})

    assert_problem(response, 422)
    assert field in response.json["errors"]["json"]["params"]
