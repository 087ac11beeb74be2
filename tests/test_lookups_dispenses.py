"""``GET /v1/dispenses``: what System C's pharmacy dispensed, from the hub's own store of its
HL7 messages, through the same entitlement gate, scopes, paging and PHI policy as every
lookup."""

from __future__ import annotations

import pytest

from app.entitlements.service import forget_entitlements, revoke_entitlement
from app.pharmacy.service import receive_message
from app.tenants.models import Tenant
from app.tenants.service import get_product
from tests.fixtures.hl7 import NDC11, SEEDED_PHI, ack_segments, encoded, hl7_message
from tests.fixtures.phi import leaks_in
from tests.fixtures.problems import assert_problem, problem_fields
from tests.fixtures.webhooks import EventTenant

UNITS = ("ICU3", "ICU3", "ICU3", "WEST4")


@pytest.fixture
def pharmacy_with_dispenses(hub_app, pharmacy_tenant):
    """Four dispenses of the pharmacy tenant (three to ICU-3, one to WEST-4), an hour apart;
    returns the tenant and a reading client's headers."""
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        for hour, unit in enumerate(UNITS):
            ack = receive_message(
                db_session=hub.database.session, settings=hub.settings, transport="mllp",
                raw=encoded(hl7_message("RDS^O13", sender=pharmacy_tenant.sender, unit=unit,
                                        order=f"RX-{hour}", at=f"20261118{8 + hour:02d}00")))
            assert ack_segments(ack)["MSA"][1] == "AA"
    tenant = EventTenant(hub_app, pharmacy_tenant.tenant_id, pharmacy_tenant.slug)
    _client, headers = tenant.client(scopes=("dispenses:read",), product="administration")
    return tenant, headers


def test_dispenses_are_canonical_minimized_and_filtered_by_unit(api, pharmacy_with_dispenses):
    _tenant, headers = pharmacy_with_dispenses

    response = api.get("/v1/dispenses?unit=ICU-3", headers=headers)

    assert response.status_code == 200, response.get_data(as_text=True)
    items = response.json["items"]
    assert [item["order_number"] for item in items] == ["RX-0", "RX-1", "RX-2"]
    first = items[0]
    assert first["unit"] == "ICU-3" and first["medication"]["ndc11"] == NDC11
    assert first["dispensed_at"] == "2026-11-18T13:00:00Z"  # 08:00 in the site's New York
    assert set(first["patient"]) == {"ref"} and first["patient"]["ref"].startswith("pt_")
    assert "X-Cache" not in response.headers
    assert leaks_in(response.get_data(as_text=True), set(SEEDED_PHI)) == []


def test_pages_follow_the_cursor_without_gaps_or_repeats(api, pharmacy_with_dispenses):
    _tenant, headers = pharmacy_with_dispenses
    seen, url = [], "/v1/dispenses?page_size=3"

    while url:
        page = api.get(url, headers=headers).json
        seen += [item["order_number"] for item in page["items"]]
        url = f"/v1/dispenses?page_size=3&cursor={page['next_cursor']}" \
            if page["next_cursor"] else None

    assert seen == ["RX-0", "RX-1", "RX-2", "RX-3"]


def test_window_and_medication_filter(api, pharmacy_with_dispenses):
    _tenant, headers = pharmacy_with_dispenses

    window = api.get("/v1/dispenses?since=2026-11-18T13:05:00Z&until=2026-11-18T15:25:00Z",
                     headers=headers).json["items"]
    other_drug = api.get("/v1/dispenses?medication=00002-1433-80", headers=headers)

    assert [item["order_number"] for item in window] == ["RX-1", "RX-2"]
    assert other_drug.json["items"] == []


def test_a_cursor_of_other_filters_is_refused(api, pharmacy_with_dispenses):
    _tenant, headers = pharmacy_with_dispenses
    cursor = api.get("/v1/dispenses?page_size=1", headers=headers).json["next_cursor"]

    response = api.get(f"/v1/dispenses?page_size=1&unit=ICU-3&cursor={cursor}",
                       headers=headers)

    assert_problem(response, 422)
    assert "cursor" in problem_fields(response, "query")


def test_dispenses_need_their_scope_and_the_pharmacy_entitlement(
        api, hub_app, pharmacy_with_dispenses):
    tenant, headers = pharmacy_with_dispenses
    _other, no_scope = tenant.client(scopes=("administrations:read",), product="inventory")
    assert_problem(api.get("/v1/dispenses", headers=no_scope), 403, "insufficient-scope")

    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        revoke_entitlement(db_session=session, tenant=session.get(Tenant, tenant.tenant_id),
                           product=get_product(db_session=session, code="pharmacy"))
        session.commit()
    forget_entitlements()

    assert_problem(api.get("/v1/dispenses", headers=headers), 403, "not-entitled")


@pytest.mark.parametrize("query, field", [
    ("unit=not a unit!", "unit"), ("since=yesterday", "since"), ("page_size=0", "page_size"),
    ("since=2026-11-19T00:00:00Z&until=2026-11-18T00:00:00Z", "until"), ("ward=ICU3", "ward")])
def test_bad_filters_are_422_naming_the_field(api, pharmacy_with_dispenses, query, field):
    _tenant, headers = pharmacy_with_dispenses

    response = api.get(f"/v1/dispenses?{query}", headers=headers)

    assert_problem(response, 422)
    assert field in problem_fields(response, "query")
