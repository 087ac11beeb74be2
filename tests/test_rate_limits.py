"""Rate limits (app.rate_limits): lookups per client; the token endpoint per client id, and its
failed client authentications per client id and per address, whichever way credentials are
sent; all counted in the real Redis, keyed so no caller input lands there; over a limit a 429
problem+json with Retry-After."""


import pytest

from tests.fixtures.phi import redis_dump
from tests.fixtures.problems import assert_retry_later
from tests.fixtures.services import hub_app_with
from tests.fixtures.tenants import basic_auth

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
    return hub_app_with(hub_settings, hub_rate_limit=f"{LOOKUP_LIMIT}/minute",
                        hub_token_rate_limit=f"{TOKEN_LIMIT}/minute")


@pytest.fixture
def limited_api(limited_app):
    return limited_app.test_client()


def assert_too_many_requests(response) -> None:
    assert_retry_later(response, 429, "too-many-requests")
    assert int(response.headers["Retry-After"]) <= 60


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


FAILURES_PER_CLIENT = 3
FAILURES_PER_ADDRESS = 5


@pytest.fixture(scope="module")
def guarded_app(hub_settings, migrated_database):
    """The hub allowing 3 failed client authentications per client id and 5 per address a
    minute, and plenty of token requests."""
    return hub_app_with(hub_settings, hub_token_rate_limit="50/minute",
                        hub_token_failures_per_client=f"{FAILURES_PER_CLIENT}/minute",
                        hub_token_failures_per_address=f"{FAILURES_PER_ADDRESS}/minute")


@pytest.fixture
def guarded_api(guarded_app):
    return guarded_app.test_client()


def token_attempt(api, *, client_id, secret, address, via_basic):
    """A token request from ``address`` with credentials in HTTP Basic or in the body."""
    form = {"grant_type": "client_credentials"}
    headers = {}
    if via_basic:
        headers = basic_auth(client_id, secret)
    else:
        form.update(client_id=client_id, client_secret=secret)
    return api.post("/v1/oauth/token", data=form, headers=headers,
                    environ_base={"REMOTE_ADDR": address})


def test_rotating_client_ids_from_one_address_hits_the_address_limit(guarded_api, demo_tenants):
    attacker = "198.51.100.7"
    for attempt in range(FAILURES_PER_ADDRESS):
        guessed = token_attempt(guarded_api, client_id=f"guess-{attempt}", secret="not-it",
                                address=attacker, via_basic=attempt % 2 == 0)
        assert guessed.status_code == 401, guessed.json

    # A fresh client id every time, Basic or body: the address is what is counted.
    assert_too_many_requests(token_attempt(guarded_api, client_id="guess-next", secret="not-it",
                                           address=attacker, via_basic=True))
    assert_too_many_requests(token_attempt(guarded_api, client_id="guess-next", secret="not-it",
                                           address=attacker, via_basic=False))
    # Other addresses are not affected.
    legitimate = token_attempt(guarded_api, client_id=INVENTORY,
                               secret=demo_tenants[INVENTORY].client_secret,
                               address="203.0.113.20", via_basic=True)
    assert legitimate.status_code == 200, legitimate.json


def test_one_client_id_sprayed_from_many_addresses_hits_the_client_id_limit(guarded_api,
                                                                           demo_tenants):
    for attempt in range(FAILURES_PER_CLIENT):
        guessed = token_attempt(guarded_api, client_id=INVENTORY, secret=f"guess-{attempt}",
                                address=f"192.0.2.{attempt + 1}", via_basic=attempt % 2 == 0)
        assert guessed.status_code == 401, guessed.json

    # From yet another address, even with the right secret, this client id waits.
    assert_too_many_requests(token_attempt(guarded_api, client_id=INVENTORY,
                                           secret=demo_tenants[INVENTORY].client_secret,
                                           address="192.0.2.200", via_basic=True))
    # Another client at that address is not affected.
    other = token_attempt(guarded_api, client_id=RIVER_INVENTORY,
                          secret=demo_tenants[RIVER_INVENTORY].client_secret,
                          address="192.0.2.200", via_basic=False)
    assert other.status_code == 200, other.json


def test_basic_credentials_beside_a_rotated_body_client_id_gain_nothing(guarded_api):
    # The old bypass: the limiter keyed by the body's client id while Basic authenticated.
    for attempt in range(FAILURES_PER_CLIENT + 2):
        response = guarded_api.post(
            "/v1/oauth/token", headers=basic_auth(INVENTORY, f"guess-{attempt}"),
            data={"grant_type": "client_credentials", "client_id": f"decoy-{attempt}"},
            environ_base={"REMOTE_ADDR": f"192.0.2.{100 + attempt}"})
        assert response.status_code == 400 and response.json["error"] == "invalid_request"

    # Basic alone is counted by the Basic client id, whatever the address.
    for attempt in range(FAILURES_PER_CLIENT):
        guessed = guarded_api.post("/v1/oauth/token", headers=basic_auth(INVENTORY, "guess"),
                                   data={"grant_type": "client_credentials"},
                                   environ_base={"REMOTE_ADDR": f"192.0.2.{150 + attempt}"})
        assert guessed.status_code == 401
    assert_too_many_requests(guarded_api.post(
        "/v1/oauth/token", headers=basic_auth(INVENTORY, "guess"),
        data={"grant_type": "client_credentials"}, environ_base={"REMOTE_ADDR": "192.0.2.199"}))


def test_successful_token_requests_do_not_use_up_the_failure_budget(guarded_api, demo_tenants):
    address = "203.0.113.50"
    for _ in range(FAILURES_PER_ADDRESS + 1):
        issued = token_attempt(guarded_api, client_id=INVENTORY,
                               secret=demo_tenants[INVENTORY].client_secret, address=address,
                               via_basic=False)
        assert issued.status_code == 200, issued.json

    # The failure budgets are still whole: a mistyped secret is a 401, not a 429.
    for _ in range(FAILURES_PER_CLIENT):
        mistyped = token_attempt(guarded_api, client_id=INVENTORY, secret="typo",
                                 address=address, via_basic=False)
        assert mistyped.status_code == 401, mistyped.json


PATIENT_NAME = "Maribel Okonkwo-Lindqvist"


def test_client_id_sent_to_the_token_endpoint_never_becomes_a_redis_key(guarded_api, hub_app):
    # A patient's name typed into the client id field, by body and by Basic.
    for via_basic in (False, True):
        response = token_attempt(guarded_api, client_id=PATIENT_NAME, secret="x",
                                 address="198.51.100.99", via_basic=via_basic)
        assert response.status_code == 401

    contents = redis_dump(hub_app.extensions["hub"].redis)

    assert "hub:ratelimit" in contents  # the attempts were counted
    for part in ("Maribel", "Okonkwo", "Lindqvist"):
        assert part.lower() not in contents.lower(), part
