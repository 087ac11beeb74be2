"""A dependency that is down is a 503 with Retry-After, never a 500 and never an HTML page.

The outages are real: the hub is pointed at a database or a Redis that does not answer (a
closed port, or an SQLite file in a folder that does not exist), exactly what it sees when the
server is down or failing over. Nothing of the hub is mocked.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.engine import make_url

from tests.fixtures.problems import assert_problem
from tests.fixtures.processes import free_port
from tests.fixtures.services import hub_app_with
from tests.fixtures.tenants import basic_auth

OPERATOR = "north-general-operator"


def _unreachable_database(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite:////nonexistent-{uuid.uuid4().hex}/hub.db"
    return parsed.set(host="127.0.0.1", port=free_port()).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def database_down(hub_settings):
    """The hub with its database gone. It trusts its memory of a client's state for a
    minute, so a request of a client it just saw passes the bearer check and reaches the view
    (which then needs the database)."""
    return hub_app_with(hub_settings, hub_client_state_seconds=60,
                        database_url=_unreachable_database(hub_settings.database_url))


@pytest.fixture(scope="module")
def redis_down(hub_settings, migrated_database):
    """The hub with its Redis (cache, rate limits, breaker state) gone."""
    return hub_app_with(hub_settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")


def assert_outage(response, problem_type: str) -> None:
    assert response.content_type == "application/problem+json", response.get_data(as_text=True)
    assert_problem(response, 503, problem_type)
    assert int(response.headers["Retry-After"]) > 0


def test_token_endpoint_answers_503_while_the_database_is_down(database_down, demo_tenants):
    credential = demo_tenants[OPERATOR]

    response = database_down.test_client().post(
        "/v1/oauth/token", data={"grant_type": "client_credentials"},
        headers=basic_auth(OPERATOR, credential.client_secret))

    assert_outage(response, "database-unavailable")


@pytest.mark.parametrize("client_id, method, path", [
    (OPERATOR, "GET", "/v1/jobs"), (OPERATOR, "GET", f"/v1/jobs/{uuid.uuid4()}"),
    (OPERATOR, "POST", "/v1/jobs"), (OPERATOR, "GET", "/v1/admin/syncs"),
    (OPERATOR, "GET", "/v1/admin/connections"), (OPERATOR, "GET", "/v1/audit-events"),
    ("north-general-inventory", "GET", "/v1/administrations?unit=ICU-3"),
    ("north-general-emar", "GET", "/v1/dispenses")])
def test_every_endpoint_needing_the_database_answers_503_not_500(
        database_down, hub_app, tokens, client_id, method, path):
    headers = tokens.headers(client_id, **({"Idempotency-Key": uuid.uuid4().hex}
                                           if method == "POST" else {}))
    # The live hub sees the client now: the process remembers its state (same process).
    assert hub_app.test_client().get("/v1/jobs", headers=headers).status_code in (200, 403)

    response = database_down.test_client().open(
        path, method=method, headers=headers,
        json={"type": "administration_counts", "params": {}} if method == "POST" else None)

    assert_outage(response, "database-unavailable")


def test_a_client_the_hub_cannot_look_up_is_refused_503_fail_closed(database_down, tokens):
    from app.clients.service import forget_client_states

    forget_client_states()

    response = database_down.test_client().get("/v1/jobs", headers=tokens.headers(OPERATOR))

    assert_outage(response, "database-unavailable")


def test_readiness_names_the_database_and_liveness_stays_up(database_down):
    client = database_down.test_client()

    ready = client.get("/readyz")

    assert client.get("/healthz").status_code == 200
    assert ready.status_code == 503
    assert ready.json["checks"]["database"]["ok"] is False


def test_while_redis_is_down_tokens_jobs_and_lookups_still_answer(
        redis_down, tokens, demo_tenants):
    client = redis_down.test_client()
    credential = demo_tenants[OPERATOR]

    token = client.post("/v1/oauth/token", data={"grant_type": "client_credentials"},
                        headers=basic_auth(OPERATOR, credential.client_secret))
    jobs = client.get("/v1/jobs", headers=tokens.headers(OPERATOR))
    lookup = client.get("/v1/administrations?unit=ICU-3&page_size=2",
                        headers=tokens.headers("north-general-inventory"))

    assert (token.status_code, jobs.status_code) == (200, 200)
    # Without the cache (a miss), rate limits and breaker state counted in this process's
    # memory, the answer comes from System B: a Redis outage slows lookups, it does not stop
    # them.
    assert lookup.status_code == 200, lookup.get_data(as_text=True)[:300]
    assert lookup.headers["X-Cache"] == "MISS" and len(lookup.json["items"]) == 2
