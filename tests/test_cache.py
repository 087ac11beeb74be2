"""The lookup cache (app.cache): MISS then HIT without a downstream call, a new MISS once the
fresh TTL has passed, one entry per tenant × consumer × parameters, keys that name no query
value, and values that hold only PHI-minimized answers. Real Redis, demo systems over HTTP."""

import json
import re

import pytest

from app.clients.service import ensure_client, new_client_secret
from app.tenants.service import get_tenant_by_slug
from devstack.demo_tenants import DemoCredential
from tests.fixtures.processes import wait_until
from tests.fixtures.services import hub_app_with
from tests.fixtures.tenants import TokenBook, hub_redis

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

INVENTORY = "north-general-inventory"  # System A's client: reads administrations
RIVER_INVENTORY = "river-valley-inventory"
EMAR = "north-general-emar"  # System B's client: reads inventory as consumer "administration"
READER = "north-general-test-inventory-reader"  # an operator client that may read inventory
ADMINISTRATIONS = "/v1/administrations?unit=ICU-3&page_size=5"
KEY_PATTERN = re.compile(r"customer:(?P<tenant>[a-z0-9-]+):product:(?P<system>[a-z]+):"
                         r"resource:(?P<type>[a-z_]+):(?P<hash>[0-9a-f]{32})")


def cache_keys(app) -> list[str]:
    return sorted(hub_redis(app).scan_iter(match="customer:*", count=500))


@pytest.fixture(scope="module")
def short_ttl_app(hub_settings, migrated_database):
    """The hub with every cached lookup fresh for 1 s."""
    return hub_app_with(
        hub_settings, hub_cache_ttls="administrations=1,container_origin=1,inventory=1",
        hub_breaker_failures=2, hub_breaker_reset_seconds=2, hub_downstream_attempts=2,
        hub_downstream_read_timeout=0.5)


@pytest.fixture(scope="module")
def short_ttl_tokens(short_ttl_app, demo_tenants) -> TokenBook:
    return TokenBook(short_ttl_app, demo_tenants)


@pytest.fixture
def short_ttl_api(short_ttl_app, own_breakers, monkeypatch):
    """A test client of ``short_ttl_app``; the breaker state it leaves in Redis does not
    outlive the test."""
    return short_ttl_app.test_client()


@pytest.fixture(scope="module")
def reader_tokens(hub_app, demo_tenants) -> TokenBook:
    """Tokens of the demo clients and of an operator client of north-general that may read
    inventory (the demo operator may not), so two consumers can ask the same question."""
    hub = hub_app.extensions["hub"]
    secret = new_client_secret()
    with hub_app.app_context():
        session = hub.database.session
        tenant = get_tenant_by_slug(db_session=session, slug="north-general")
        ensure_client(db_session=session, client_id=READER, tenant=tenant, product=None,
                      name=READER, scopes=["inventory:read"], secret=secret)
        session.commit()
    reader = DemoCredential("north-general", READER, secret, "inventory:read")
    return TokenBook(hub_app, {**demo_tenants, READER: reader})


@pytest.fixture(scope="module")
def dispensed_container(demo_inventory) -> str:
    response = demo_inventory.get("north-general", "/containers", status="dispensed", limit=1)
    return response.json()["items"][0]["containerId"]


def test_container_origin_is_a_miss_then_a_hit_without_downstream_call(
        api, tokens, demo_inventory, dispensed_container):
    url = f"/v1/containers/{dispensed_container}/origin"
    first = api.get(url, headers=tokens.headers(EMAR))
    calls_after_first = demo_inventory.admin.requests_count()["total"]

    second = api.get(url, headers=tokens.headers(EMAR))

    assert first.status_code == 200, first.json
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert second.json == first.json
    assert calls_after_first > 0
    assert demo_inventory.admin.requests_count()["total"] == calls_after_first


def test_entry_is_a_miss_again_once_its_fresh_ttl_has_passed(
        short_ttl_api, short_ttl_tokens, demo_administration):
    headers = short_ttl_tokens.headers(INVENTORY)
    first = short_ttl_api.get(ADMINISTRATIONS, headers=headers)
    assert first.headers["X-Cache"] == "MISS"
    calls_after_first = demo_administration.admin.requests_count()["total"]
    seen = []

    def cache_turns_miss() -> bool:
        seen.append(short_ttl_api.get(ADMINISTRATIONS, headers=headers).headers["X-Cache"])
        return seen[-1] == "MISS"

    wait_until(cache_turns_miss, timeout=5, interval=0.1, description="X-Cache MISS after TTL")

    assert set(seen[:-1]) <= {"HIT"}
    # Every HIT came from Redis; only the second MISS went downstream.
    assert demo_administration.admin.requests_count()["total"] == calls_after_first + 1


def test_different_parameters_do_not_share_an_entry(api, tokens, demo_administration):
    answers = [api.get(url, headers=tokens.headers(INVENTORY)) for url in (
        "/v1/administrations?unit=ICU-3&page_size=5",
        "/v1/administrations?unit=ICU-2&page_size=5",
        "/v1/administrations?unit=ICU-3&page_size=6")]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.headers["X-Cache"] for a in answers] == ["MISS", "MISS", "MISS"]
    assert demo_administration.admin.requests_count()["total"] == 3
    assert len(cache_keys(api.application)) == 3


def test_same_parameters_spelled_differently_share_an_entry(api, tokens, demo_administration):
    dashed = api.get("/v1/administrations?unit=ICU-3&page_size=5",
                     headers=tokens.headers(INVENTORY))
    ward_spelling = api.get("/v1/administrations?unit=ICU3&page_size=5",
                            headers=tokens.headers(INVENTORY))

    assert (dashed.headers["X-Cache"], ward_spelling.headers["X-Cache"]) == ("MISS", "HIT")
    assert demo_administration.admin.requests_count()["total"] == 1


def test_different_tenants_do_not_share_an_entry(api, tokens, demo_administration):
    north = api.get(ADMINISTRATIONS, headers=tokens.headers(INVENTORY))
    river = api.get(ADMINISTRATIONS, headers=tokens.headers(RIVER_INVENTORY))

    assert (north.status_code, river.status_code) == (200, 200)
    assert (north.headers["X-Cache"], river.headers["X-Cache"]) == ("MISS", "MISS")
    assert demo_administration.admin.requests_count()["by_site"] == {
        "north-general": 1, "river-valley": 1}
    assert {KEY_PATTERN.fullmatch(key)["tenant"] for key in cache_keys(api.application)} == {
        "north-general", "river-valley"}


def test_different_consumers_do_not_share_an_entry(api, reader_tokens, demo_inventory,
                                                   dispensed_container):
    url = f"/v1/containers/{dispensed_container}/origin"
    as_emar = api.get(url, headers=reader_tokens.headers(EMAR))
    calls_for_one_origin = demo_inventory.admin.requests_count()["total"]

    as_operator = api.get(url, headers=reader_tokens.headers(READER))

    assert (as_emar.status_code, as_operator.status_code) == (200, 200), as_operator.json
    assert (as_emar.headers["X-Cache"], as_operator.headers["X-Cache"]) == ("MISS", "MISS")
    assert demo_inventory.admin.requests_count()["total"] == 2 * calls_for_one_origin
    assert len(cache_keys(api.application)) == 2


def test_cache_key_names_tenant_system_and_resource_but_no_query_value(api, tokens):
    response = api.get("/v1/administrations?unit=ICU-3&since=2026-11-18T00:00:00Z&page_size=7",
                       headers=tokens.headers(INVENTORY))
    assert response.status_code == 200, response.json

    [key] = cache_keys(api.application)

    parts = KEY_PATTERN.fullmatch(key)
    assert parts, key
    assert (parts["tenant"], parts["system"], parts["type"]) == (
        "north-general", "administration", "administrations")
    for query_value in ("ICU", "2026-11-18", "page_size", "unit", "since", "inventory"):
        assert query_value not in key


def test_cached_value_is_the_minimized_answer_and_nothing_of_the_query(api, tokens):
    response = api.get("/v1/administrations?unit=ICU-3&since=2026-11-18T00:00:00Z&page_size=5",
                       headers=tokens.headers(INVENTORY))
    [key] = cache_keys(api.application)

    raw = hub_redis(api.application).get(key)
    entry = json.loads(raw)

    assert set(entry) == {"payload", "stored_at", "fresh_until"}
    assert set(entry["payload"]) == {"items", "next_cursor"}
    assert [item["administration_id"] for item in entry["payload"]["items"]] == [
        item["administration_id"] for item in response.json["items"]]
    assert all(set(item["patient"]) == {"ref", "birth_year"} for item in entry["payload"]["items"])
    assert "2026-11-18T00:00:00" not in raw and "since" not in raw
    # Kept for the fresh TTL plus the stale window (HUB_CACHE_STALE_SECONDS).
    assert hub_redis(api.application).ttl(key) > 86400


def string_leaves(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from string_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from string_leaves(item)


def test_cached_values_hold_no_patient_name_mrn_birth_date_or_note(
        api, tokens, demo_administration):
    for unit in ("ICU-3", "MEDSURG-1", "PEDS-1", "ED-1"):
        response = api.get(f"/v1/administrations?unit={unit}&page_size=500",
                           headers=tokens.headers(INVENTORY))
        assert response.status_code == 200, response.json
        assert response.json["items"], unit
    entries = [json.loads(hub_redis(api.application).get(key)) for key in cache_keys(api.application)]
    cached_strings = {text for entry in entries for text in string_leaves(entry)}
    cached_text = "\x00".join(cached_strings)
    phi = demo_administration.admin.export_phi()
    assert phi["patients"] and phi["notes"]

    in_clear = [value for patient in phi["patients"] for value in (patient["full_name"], patient["mrn"])
                if value in cached_text]
    in_clear += [note for note in phi["notes"] if note in cached_text]
    in_clear += [patient["birth_date"] for patient in phi["patients"]
                 if patient["birth_date"] in cached_strings]

    assert in_clear == []
    patients = [item["patient"] for entry in entries for item in entry["payload"]["items"]]
    assert len(entries) == 4 and patients
    assert all(set(patient) == {"ref", "birth_year"} and patient["ref"].startswith("pt_")
               for patient in patients)
