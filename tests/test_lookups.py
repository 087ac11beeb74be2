"""Sync lookups end to end: token → entitlement → cache → demo system over HTTP →
normalization → PHI policy → response."""

import pytest

from tests.fixtures.problems import assert_problem

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

EMAR = "north-general-emar"          # System B's client: reads inventory
INVENTORY = "north-general-inventory"  # System A's client: reads administrations


def test_administrations_are_canonical_and_minimized(api, tokens):
    response = api.get("/v1/administrations?unit=ICU3&page_size=20",
                       headers=tokens.headers(INVENTORY))

    assert response.status_code == 200, response.json
    assert response.headers["X-Cache"] == "MISS"
    items = response.json["items"]
    assert items
    first = items[0]
    assert first["unit"] == "ICU-3"
    assert len(first["medication"]["ndc11"]) == 11
    assert first["administered_at"].endswith("Z")
    assert first["patient"]["ref"].startswith("pt_")
    assert set(first["patient"]) == {"ref", "birth_year"}
    assert "note" not in first and "nurse_id" not in first


def test_second_identical_lookup_is_a_cache_hit_without_downstream_call(
        api, tokens, demo_administration):
    url = "/v1/administrations?unit=ICU-3&page_size=5"
    first = api.get(url, headers=tokens.headers(INVENTORY))
    calls_after_first = demo_administration.admin.requests_count()["total"]

    second = api.get(url, headers=tokens.headers(INVENTORY))

    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert second.json == first.json
    assert demo_administration.admin.requests_count()["total"] == calls_after_first


def test_container_origin_has_its_movement_chain(api, tokens, demo_inventory):
    containers = demo_inventory.get("north-general", "/containers", status="dispensed",
                                    limit=1).json()["items"]
    container_id = containers[0]["containerId"]

    response = api.get(f"/v1/containers/{container_id}/origin", headers=tokens.headers(EMAR))

    assert response.status_code == 200, response.json
    body = response.json
    assert body["container_id"] == container_id
    assert [m["type"] for m in body["movements"]] == ["received", "stocked", "dispensed"]
    assert all(m["at"].endswith("Z") for m in body["movements"])


def test_unentitled_tenant_gets_403_without_downstream_call(api, tokens, demo_inventory):
    response = api.get("/v1/containers/LSC-C00000001/origin",
                       headers=tokens.headers("lakeside-clinic-emar"))

    assert response.status_code == 403
    assert response.json["type"].endswith("/not-entitled")
    assert demo_inventory.admin.requests_count()["total"] == 0


def test_request_id_follows_the_lookup_downstream_and_back(api, tokens, demo_administration):
    response = api.get("/v1/administrations?unit=ICU-2&page_size=3",
                       headers=tokens.headers(INVENTORY, **{"X-Request-ID": "trace-ward2-001"}))

    assert response.headers["X-Request-ID"] == "trace-ward2-001"
    assert "trace-ward2-001" in demo_administration.admin.requests_count()["recent_request_ids"]


def test_medication_filter_accepts_any_ndc_format(api, tokens, demo_administration):
    some = api.get("/v1/administrations?page_size=1", headers=tokens.headers(INVENTORY)).json
    ndc11 = some["items"][0]["medication"]["ndc11"]
    dashed = f"{ndc11[:5]}-{ndc11[5:9]}-{ndc11[9:]}"

    eleven = api.get(f"/v1/administrations?medication={ndc11}&page_size=50",
                     headers=tokens.headers(INVENTORY)).json["items"]
    with_dashes = api.get(f"/v1/administrations?medication={dashed}&page_size=50",
                          headers=tokens.headers(INVENTORY)).json["items"]

    assert eleven and eleven == with_dashes
    assert {item["medication"]["ndc11"] for item in eleven} == {ndc11}


@pytest.mark.parametrize("query, field", [
    ("medication=0409488802", "medication"),        # 10 digits without dashes: ambiguous
    ("unit=ICU%233", "unit"),
    ("since=2026-11-18T00:00:00", "since"),          # no UTC offset
    ("since=2026-11-19T00:00:00Z&until=2026-11-18T00:00:00Z", "until"),
    ("page_size=5000", "page_size"),
    ("cursor=not-a-cursor", "cursor"),
])
def test_bad_parameters_are_422_with_field_errors_and_no_downstream_call(
        api, tokens, demo_administration, query, field):
    response = api.get(f"/v1/administrations?{query}", headers=tokens.headers(INVENTORY))

    assert_problem(response, 422)
    assert field in response.json["errors"]["query"]
    assert demo_administration.admin.requests_count()["total"] == 0


def test_inventory_by_medication_finds_containers_whatever_the_ndc_layout(
        api, tokens, demo_inventory):
    native = demo_inventory.get("north-general", "/containers", status="stocked",
                                limit=1).json()["items"][0]
    dashed_ndc10 = native["drug"]["ndc"]

    response = api.get(f"/v1/inventory?medication={dashed_ndc10}&page_size=500",
                       headers=tokens.headers(EMAR))

    assert response.status_code == 200
    items = response.json["items"]
    assert native["containerId"] in {item["container_id"] for item in items}
    assert len({item["medication"]["ndc11"] for item in items}) == 1


def test_inventory_pages_walk_every_container_once(api, tokens, demo_inventory):
    expected = demo_inventory.get("north-general", "/containers", unit="ICU-1",
                                  limit=500).json()
    on_hand = {item["containerId"] for item in expected["items"]
               if item["status"] != "received"}

    seen, url = [], "/v1/inventory?unit=ICU1&page_size=7"
    while url:
        page = api.get(url, headers=tokens.headers(EMAR)).json
        seen += [item["container_id"] for item in page["items"]]
        url = (f"/v1/inventory?unit=ICU1&page_size=7&cursor={page['next_cursor']}"
               if page["next_cursor"] else None)

    assert expected["total"] <= 500
    assert sorted(seen) == sorted(on_hand)


def test_unknown_container_is_404(api, tokens):
    response = api.get("/v1/containers/NGH-C99999999/origin", headers=tokens.headers(EMAR))

    assert_problem(response, 404)


def test_fhir_bundle_is_served_for_fhir_accept_header(api, tokens):
    from fhir.resources.R4B.bundle import Bundle

    response = api.get("/v1/administrations?unit=ICU-3&page_size=5",
                       headers=tokens.headers(INVENTORY, Accept="application/fhir+json"))

    assert response.status_code == 200
    assert response.content_type == "application/fhir+json"
    bundle = Bundle.model_validate(response.json)
    assert bundle.type == "searchset"
    assert {entry.resource.get_resource_type() for entry in bundle.entry} == {
        "MedicationAdministration"}


def test_administration_system_cannot_read_administrations_back(api, hub_app, demo_tenants,
                                                                 demo_administration):
    # No PHI policy exists for (administration, administration): refused before any call,
    # even for a client whose scopes would allow the read.
    from app.clients.service import ensure_client
    from app.tenants.service import get_product, get_tenant_by_slug

    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        ensure_client(db_session=session, client_id="north-general-emar-reader",
                      tenant=get_tenant_by_slug(db_session=session, slug="north-general"),
                      product=get_product(db_session=session, code="administration"),
                      name="eMAR reading itself", scopes=["administrations:read"],
                      secret="reader-secret-0123456789")
        session.commit()
    token = api.post("/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": "north-general-emar-reader",
        "client_secret": "reader-secret-0123456789"}).json["access_token"]

    response = api.get("/v1/administrations", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 403
    assert response.json["type"].endswith("/no-phi-policy")
    assert demo_administration.admin.requests_count()["total"] == 0
