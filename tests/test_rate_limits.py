"""Rate limits (app.rate_limits): lookups per client, the token endpoint per client id and
address, both counted in the real Redis; over the limit a 429 problem+json with Retry-After."""

from dataclasses import replace

import pytest

from app import create_app

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

INVENTORY = "north-general-inventory"  # reads administrations
RIVER_INVENTORY = "river-valley-inventory"
EMAR = "north-general-emar"  # reads inventory (two lookup endpoints)
ADMINISTRATIONS = "/v1/administrations?unit=ICU-3&page_size=5"
LOOKUP_LIMIT = 5
TOKEN_LIMIT = 3


@pytest.fixture(scope="module")
def limited_app(hub_settings, migrated_database):
    """The hub allowing each client 5 lookups and 3 token requests a minute. Bearer tokens come
    from the session app (same signing keys), so only the token requests a test makes itself
    count against this app's token limit."""
    app = create_app(replace(hub_settings, hub_rate_limit=f"{LOOKUP_LIMIT}/minute",
                             hub_token_rate_limit=f"{TOKEN_LIMIT}/minute"))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def limited_api(limited_app):
    return limited_app.test_client()


def assert_too_many_requests(response) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    assert response.json["status"] == 429
    assert response.json["type"].endswith("/too-many-requests")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def use_up_lookups(api, headers, url=ADMINISTRATIONS) -> None:
    for _ in range(LOOKUP_LIMIT):
        response = api.get(url, headers=headers)
        assert response.status_code == 200, response.json


def token_request(api, demo_tenants, client_id):
    return api.post("/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client_id,
        "client_secret": demo_tenants[client_id].client_secret})


def test_lookup_over_the_limit_gets_429_problem_with_retry_after_and_no_downstream_call(
        limited_api, tokens, demo_administration):
    headers = tokens.headers(INVENTORY)
    use_up_lookups(limited_api, headers)
    calls = demo_administration.admin.requests_count()["total"]

    response = limited_api.get(ADMINISTRATIONS, headers=headers)

    assert_too_many_requests(response)
    assert response.headers["X-RateLimit-Limit"] == str(LOOKUP_LIMIT)
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert demo_administration.admin.requests_count()["total"] == calls


def test_rate_limit_is_counted_per_client(limited_api, tokens):
    use_up_lookups(limited_api, tokens.headers(INVENTORY))
    assert_too_many_requests(limited_api.get(ADMINISTRATIONS, headers=tokens.headers(INVENTORY)))

    # Another client still has its whole budget, and then no more.
    use_up_lookups(limited_api, tokens.headers(RIVER_INVENTORY))
    assert_too_many_requests(limited_api.get(ADMINISTRATIONS,
                                             headers=tokens.headers(RIVER_INVENTORY)))


def test_rate_limit_is_shared_by_the_lookup_endpoints_of_a_client(limited_api, tokens,
                                                                  demo_inventory):
    # HUB_RATE_LIMIT is "requests per client": one budget, whichever lookup endpoint is used.
    container = demo_inventory.get("north-general", "/containers", status="dispensed",
                                   limit=1).json()["items"][0]["containerId"]
    headers = tokens.headers(EMAR)
    use_up_lookups(limited_api, headers, url="/v1/inventory?unit=ICU-3&page_size=5")

    response = limited_api.get(f"/v1/containers/{container}/origin", headers=headers)

    assert_too_many_requests(response)


def test_token_endpoint_has_its_own_limit_per_client_id(limited_api, tokens, demo_tenants):
    # Lookups used up: the token endpoint still answers this client.
    use_up_lookups(limited_api, tokens.headers(INVENTORY))
    assert_too_many_requests(limited_api.get(ADMINISTRATIONS, headers=tokens.headers(INVENTORY)))
    for _ in range(TOKEN_LIMIT):
        issued = token_request(limited_api, demo_tenants, INVENTORY)
        assert issued.status_code == 200, issued.json

    refused = token_request(limited_api, demo_tenants, INVENTORY)

    assert_too_many_requests(refused)
    assert token_request(limited_api, demo_tenants, RIVER_INVENTORY).status_code == 200
    # Token requests used up: another client's lookups are not affected.
    lookup = limited_api.get(ADMINISTRATIONS, headers=tokens.headers(RIVER_INVENTORY))
    assert lookup.status_code == 200, lookup.json


def test_wrong_secret_attempts_count_against_the_token_limit(limited_api, demo_tenants):
    for _ in range(TOKEN_LIMIT):
        guessed = limited_api.post("/v1/oauth/token", data={
            "grant_type": "client_credentials", "client_id": INVENTORY,
            "client_secret": "not-the-secret"})
        assert guessed.status_code == 401

    assert_too_many_requests(token_request(limited_api, demo_tenants, INVENTORY))
