"""Lookups when a hospital system misbehaves: stale answers from the cache, retries on 5xx and
timeouts, 404 passed on, and the circuit breaker (state in Redis, shared by every process).

Failures are produced by the demo systems' fault injection; nothing is mocked. Apps built here
use short timings (1 s cache TTL, 2 attempts, 0.5 s read timeout, breaker open after 2 failed
lookups for 2 s). The breaker reset is 2 s rather than 1 s because pybreaker's Redis storage
keeps ``opened_at`` in whole seconds: with 1 s an open breaker may let a trial through at once.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.settings import PROJECT_ROOT
from tests.fixtures.problems import assert_problem, assert_retry_later
from tests.fixtures.processes import wait_until
from tests.fixtures.services import hub_app_with
from tests.fixtures.tenants import TokenBook, hub_redis

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

INVENTORY = "north-general-inventory"  # System A's client: reads administrations (System B)
EMAR = "north-general-emar"  # System B's client: reads inventory (System A)
ADMINISTRATIONS = "/v1/administrations?unit=ICU-3&page_size=5"
BREAKER = "hub:breaker:north-general:administration"
FAST = {"hub_cache_ttls": "administrations=1,container_origin=1,inventory=1",
        "hub_breaker_failures": 2, "hub_breaker_reset_seconds": 2, "hub_downstream_attempts": 2,
        "hub_downstream_read_timeout": 0.5}


def build_app(hub_settings, **overrides):
    return hub_app_with(hub_settings, **{**FAST, **overrides})


def breaker_state(app) -> str | None:
    return hub_redis(app).get(f"{BREAKER}:pybreaker:state")


def downstream_calls(demo) -> int:
    return demo.admin.requests_count()["total"]


@pytest.fixture(scope="module")
def fast_app(hub_settings, migrated_database):
    return build_app(hub_settings)


@pytest.fixture(scope="module")
def fast_tokens(fast_app, demo_tenants) -> TokenBook:
    return TokenBook(fast_app, demo_tenants)


@pytest.fixture
def fast_api(fast_app, own_breakers):
    return fast_app.test_client()


def open_breaker(api, headers, demo) -> int:
    """Fail lookups until the breaker opens (2 failures); return the downstream calls made."""
    demo.admin.set_faults(error_rate=1.0)
    for page_size in (11, 12):
        refused = api.get(f"/v1/administrations?page_size={page_size}", headers=headers)
        assert_retry_later(refused, 503, "downstream-unavailable")
    return downstream_calls(demo)


# --- stale on failure -----------------------------------------------------------------------

def test_stale_answer_is_served_when_the_system_is_down_after_the_ttl(
        fast_api, fast_tokens, demo_administration):
    headers = fast_tokens.headers(INVENTORY)
    fresh = fast_api.get(ADMINISTRATIONS, headers=headers)
    assert fresh.headers["X-Cache"] == "MISS"
    demo_administration.admin.set_faults(down=True)
    answers = []

    def served_stale() -> bool:
        answers.append(fast_api.get(ADMINISTRATIONS, headers=headers))
        return answers[-1].headers.get("X-Cache") == "STALE"

    wait_until(served_stale, timeout=5, interval=0.1, description="X-Cache STALE")

    stale = answers[-1]
    assert stale.status_code == 200
    assert stale.json == fresh.json
    assert {a.headers["X-Cache"] for a in answers[:-1]} <= {"HIT"}
    assert downstream_calls(demo_administration) > 1  # the fresh fetch, then the failed one


def test_stale_answer_is_served_without_downstream_call_while_the_breaker_is_open(
        hub_settings, demo_tenants, own_breakers, demo_administration):
    app = build_app(hub_settings, hub_breaker_reset_seconds=60)
    client = app.test_client()
    headers = TokenBook(app, demo_tenants).headers(INVENTORY)
    fresh = client.get(ADMINISTRATIONS, headers=headers)
    assert fresh.headers["X-Cache"] == "MISS"
    calls = open_breaker(client, headers, demo_administration)
    assert breaker_state(app) == "open"
    answers = []

    def served_stale() -> bool:
        answers.append(client.get(ADMINISTRATIONS, headers=headers))
        return answers[-1].headers.get("X-Cache") == "STALE"

    wait_until(served_stale, timeout=5, interval=0.1, description="X-Cache STALE")

    assert answers[-1].status_code == 200
    assert answers[-1].json == fresh.json
    assert downstream_calls(demo_administration) == calls


def test_system_down_with_nothing_cached_answers_503_problem_with_retry_after(
        fast_api, fast_tokens, demo_administration):
    demo_administration.admin.set_faults(down=True)

    response = fast_api.get(ADMINISTRATIONS, headers=fast_tokens.headers(INVENTORY))

    assert_retry_later(response, 503, "downstream-unavailable")
    assert "X-Cache" not in response.headers
    assert downstream_calls(demo_administration) == 2  # both attempts


# --- retries and timeouts -------------------------------------------------------------------

def test_downstream_500s_are_retried_then_answered_503(fast_api, fast_tokens,
                                                       demo_administration):
    demo_administration.admin.set_faults(error_rate=1.0)

    response = fast_api.get(ADMINISTRATIONS, headers=fast_tokens.headers(INVENTORY))

    assert_retry_later(response, 503, "downstream-unavailable")
    assert downstream_calls(demo_administration) == FAST["hub_downstream_attempts"]


def test_hanging_system_answers_503_after_the_read_timeouts_not_the_hang(
        fast_api, fast_tokens, demo_administration):
    headers = fast_tokens.headers(INVENTORY)
    demo_administration.admin.set_faults(timeout_rate=1.0, timeout_seconds=3)

    started = time.monotonic()
    response = fast_api.get(ADMINISTRATIONS, headers=headers)
    elapsed = time.monotonic() - started

    assert_retry_later(response, 503, "downstream-unavailable")
    assert downstream_calls(demo_administration) == 2
    # Two 0.5 s read timeouts and one backoff (at most 0.3 s), far less than one 3 s hang.
    assert 1.0 <= elapsed < 2.0, elapsed


def test_one_failed_attempt_is_recovered_by_a_retry(hub_settings, demo_tenants, own_breakers,
                                                    demo_administration):
    # Five attempts leave at least 1.5 s of backoff after the first failure: time enough to
    # lift the fault once that failure has been seen, so the outcome does not depend on luck.
    patient_app = build_app(hub_settings, hub_downstream_attempts=5)
    headers = TokenBook(patient_app, demo_tenants).headers(INVENTORY)
    demo_administration.admin.set_faults(down=True)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(patient_app.test_client().get, ADMINISTRATIONS, headers=headers)
        wait_until(lambda: downstream_calls(demo_administration) >= 1, timeout=5,
                   description="first attempt reaches the demo system")
        demo_administration.admin.clear_faults()
        response = pending.result(timeout=10)

    assert response.status_code == 200, response.json
    assert response.headers["X-Cache"] == "MISS"
    assert response.json["items"]
    assert 2 <= downstream_calls(demo_administration) <= 5
    assert breaker_state(patient_app) == "closed"


def test_unknown_container_answers_404_problem_without_retry(fast_api, fast_tokens,
                                                             demo_inventory):
    response = fast_api.get("/v1/containers/NGH-C99999999/origin",
                            headers=fast_tokens.headers(EMAR))

    assert_problem(response, 404)
    assert downstream_calls(demo_inventory) == 1


def test_not_found_answers_do_not_open_the_breaker(fast_api, fast_tokens, demo_inventory):
    headers = fast_tokens.headers(EMAR)
    for _ in range(3):
        assert fast_api.get("/v1/containers/NGH-C99999999/origin",
                            headers=headers).status_code == 404

    assert downstream_calls(demo_inventory) == 3
    assert hub_redis(fast_api.application).get(
        "hub:breaker:north-general:inventory:pybreaker:state") == "closed"


# --- circuit breaker ------------------------------------------------------------------------

def test_breaker_opens_after_failed_lookups_and_refuses_without_downstream_call(
        fast_api, fast_tokens, demo_administration):
    headers = fast_tokens.headers(INVENTORY)
    calls = open_breaker(fast_api, headers, demo_administration)
    assert calls == 2 * FAST["hub_downstream_attempts"]
    assert breaker_state(fast_api.application) == "open"

    refused = fast_api.get(ADMINISTRATIONS, headers=headers)

    assert_retry_later(refused, 503, "downstream-unavailable")
    assert downstream_calls(demo_administration) == calls


def test_open_breaker_is_shared_with_another_process(
        hub_settings, hub_environment, demo_tenants, own_breakers, demo_administration,
        tmp_path):
    # Open long enough that the other process surely asks while it is still open.
    settings = {"hub_breaker_reset_seconds": 60}
    app = build_app(hub_settings, **settings)
    headers = TokenBook(app, demo_tenants).headers(INVENTORY)
    calls = open_breaker(app.test_client(), headers, demo_administration)
    assert breaker_state(app) == "open"

    answer = lookup_in_another_process(
        hub_environment, {**FAST, **settings}, ADMINISTRATIONS, headers, tmp_path)

    assert answer["status"] == 503, answer
    assert answer["type"].endswith("/downstream-unavailable")
    assert 1 <= int(answer["retry_after"]) <= 60
    assert answer["pid"] != os.getpid()
    assert downstream_calls(demo_administration) == calls


def test_breaker_lets_one_trial_through_after_the_reset_time_and_closes_on_success(
        fast_api, fast_tokens, demo_administration):
    headers = fast_tokens.headers(INVENTORY)
    calls = open_breaker(fast_api, headers, demo_administration)
    assert breaker_state(fast_api.application) == "open"
    demo_administration.admin.clear_faults()

    wait_until(lambda: fast_api.get(ADMINISTRATIONS, headers=headers).status_code == 200,
               timeout=5, interval=0.1, description="a lookup through the half-open breaker")

    assert downstream_calls(demo_administration) == calls + 1  # the trial, nothing before it
    assert breaker_state(fast_api.application) == "closed"
    following = fast_api.get("/v1/administrations?unit=ICU-2&page_size=5", headers=headers)
    assert (following.status_code, following.headers["X-Cache"]) == (200, "MISS")
    assert downstream_calls(demo_administration) == calls + 2


def test_failed_trial_reopens_the_breaker(fast_api, fast_tokens, demo_administration):
    headers = fast_tokens.headers(INVENTORY)
    calls = open_breaker(fast_api, headers, demo_administration)
    answers = []

    def trial_went_downstream() -> bool:
        answers.append(fast_api.get(ADMINISTRATIONS, headers=headers))
        return downstream_calls(demo_administration) > calls

    wait_until(trial_went_downstream, timeout=5, interval=0.1, description="a half-open trial")

    assert_retry_later(answers[-1], 503, "downstream-unavailable")
    assert breaker_state(fast_api.application) == "open"
    after_trial = downstream_calls(demo_administration)
    assert after_trial == calls + FAST["hub_downstream_attempts"]
    refused = fast_api.get(ADMINISTRATIONS, headers=headers)
    assert_retry_later(refused, 503, "downstream-unavailable")
    assert downstream_calls(demo_administration) == after_trial


def test_breaker_thresholds_follow_the_settings_of_the_app_that_calls(
        api, tokens, fast_app, fast_tokens, own_breakers, demo_administration):
    # The session app (5 failures, 30 s) calls System B first in this process...
    assert api.get(ADMINISTRATIONS, headers=tokens.headers(INVENTORY)).status_code == 200
    fast_api = fast_app.test_client()

    # ...then an app configured to open the breaker after 2 failed lookups.
    calls = open_breaker(fast_api, fast_tokens.headers(INVENTORY), demo_administration)
    refused = fast_api.get("/v1/administrations?page_size=13",
                           headers=fast_tokens.headers(INVENTORY))

    assert_retry_later(refused, 503, "downstream-unavailable")
    assert downstream_calls(demo_administration) == calls, (
        "HUB_BREAKER_FAILURES=2 was ignored: breaker_for() reused the breaker built with the "
        "first app's thresholds")


def test_retry_after_of_a_503_is_the_hubs_estimate_not_the_rate_limit_window(
        fast_api, fast_tokens, demo_administration):
    demo_administration.admin.set_faults(down=True)

    response = fast_api.get(ADMINISTRATIONS, headers=fast_tokens.headers(INVENTORY))

    assert_retry_later(response, 503, "downstream-unavailable")
    # LookupFailed says 5 s; Flask-Limiter's header injection must not stretch it to the end
    # of the client's rate-limit window (up to a minute).
    assert response.headers["Retry-After"] == "5"


def test_retry_after_of_an_open_breaker_is_the_time_until_its_trial(
        fast_api, fast_tokens, demo_administration):
    headers = fast_tokens.headers(INVENTORY)
    open_breaker(fast_api, headers, demo_administration)

    refused = fast_api.get(ADMINISTRATIONS, headers=headers)

    assert_retry_later(refused, 503, "downstream-unavailable")
    assert refused.headers["Retry-After"] in {"1", "2"}  # HUB_BREAKER_RESET_SECONDS=2


LOOKUP_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from app import create_app

    client = create_app().test_client()
    response = client.get(sys.argv[1], headers={"Authorization": os.environ["LOOKUP_AUTHORIZATION"]})
    answer = {"status": response.status_code, "retry_after": response.headers.get("Retry-After"),
              "type": (response.json or {}).get("type"), "pid": os.getpid()}
    with open(sys.argv[2], "w") as out:
        json.dump(answer, out)
""")


def lookup_in_another_process(hub_environment, settings: dict, url: str, headers: dict,
                              tmp_path) -> dict:
    """Run one lookup in a fresh Python process whose app reads ``settings`` from the
    environment, as an API worker would; return its status, Retry-After and problem type."""
    out = tmp_path / "answer.json"
    environment = {**os.environ, **hub_environment,
                   **{name.upper(): str(value) for name, value in settings.items()},
                   "LOOKUP_AUTHORIZATION": headers["Authorization"]}
    finished = subprocess.run([sys.executable, "-c", LOOKUP_SCRIPT, url, str(out)],
                              cwd=PROJECT_ROOT, env=environment, capture_output=True, timeout=60)
    assert finished.returncode == 0, finished.stderr.decode(errors="replace")[-3000:]
    return json.loads(out.read_text())
