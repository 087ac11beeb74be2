"""Two tenants never see each other's data: lookups, containers and cache entries."""

import pytest

pytestmark = pytest.mark.usefixtures("clean_lookup_state")


def _all_administration_ids(api, headers):
    ids, url = [], "/v1/administrations?page_size=500"
    while url:
        page = api.get(url, headers=headers)
        assert page.status_code == 200, page.json
        ids += [item["administration_id"] for item in page.json["items"]]
        cursor = page.json["next_cursor"]
        url = f"/v1/administrations?page_size=500&cursor={cursor}" if cursor else None
    return ids


def test_each_tenant_sees_only_its_own_administrations(api, tokens):
    north = _all_administration_ids(api, tokens.headers("north-general-inventory"))
    river = _all_administration_ids(api, tokens.headers("river-valley-inventory"))

    assert north and river
    assert all(admin_id.startswith("NGH-") for admin_id in north)
    assert all(admin_id.startswith("RVH-") for admin_id in river)
    assert len(set(north)) == len(north)


def test_another_tenants_container_is_not_found(api, tokens, demo_inventory):
    river_container = demo_inventory.get("river-valley", "/containers", limit=1
                                         ).json()["items"][0]["containerId"]

    response = api.get(f"/v1/containers/{river_container}/origin",
                       headers=tokens.headers("north-general-emar"))

    assert response.status_code == 404
    assert river_container not in response.get_data(as_text=True)


def test_same_lookup_by_two_tenants_uses_two_cache_entries(api, tokens, hub_app):
    url = "/v1/inventory?unit=ICU-1&page_size=5"
    north = api.get(url, headers=tokens.headers("north-general-emar"))
    river = api.get(url, headers=tokens.headers("river-valley-emar"))

    keys = sorted(hub_app.extensions["hub"].redis.scan_iter(match="customer:*:resource:inventory:*"))
    assert (north.headers["X-Cache"], river.headers["X-Cache"]) == ("MISS", "MISS")
    assert [key.split(":")[1] for key in keys] == ["north-general", "river-valley"]
    assert {item["location"]["facility"] for item in north.json["items"]} == {"NGH"}
    assert {item["location"]["facility"] for item in river.json["items"]} == {"RVH"}


def test_pseudonyms_of_the_same_patient_differ_between_tenants():
    from app.phi.pseudonyms import Pseudonymizer, tenant_pseudonym_key

    north = Pseudonymizer(tenant_pseudonym_key("master", "tenant-a"))
    river = Pseudonymizer(tenant_pseudonym_key("master", "tenant-b"))

    assert north.pseudonym("MRN00000001", "patient") != river.pseudonym("MRN00000001", "patient")
