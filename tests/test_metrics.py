"""Prometheus metrics (app.observability): ``GET /metrics`` shows request counts, cache hits and
misses, downstream latency and breaker state to a scraper with the metrics credentials only;
under gunicorn with several workers every scrape adds up all of them
(``PROMETHEUS_MULTIPROC_DIR``)."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from tests.fixtures.problems import assert_problem
from tests.fixtures.processes import wait_until
from tests.fixtures.services import running_gunicorn
from tests.fixtures.tenants import TokenBook, forget_breakers

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

INVENTORY = "north-general-inventory"  # reads administrations (System B)
ADMINISTRATIONS = "/v1/administrations?unit=ICU-3&page_size=5"


def metric(text: str, sample_name: str, **labels: str) -> float:
    """The sum of the samples called ``sample_name`` whose labels include ``labels``."""
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == sample_name and labels.items() <= sample.labels.items())


def scraper_auth(settings) -> tuple[str, str]:
    """The (user, password) Prometheus sends, from ``HUB_METRICS_BASIC_AUTH``."""
    user, _, password = settings.hub_metrics_basic_auth.partition(":")
    return user, password


def scrape(client) -> str:
    auth = scraper_auth(client.application.extensions["hub"].settings)
    response = client.get("/metrics", auth=auth)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_metrics_without_credentials_is_401_problem_with_a_basic_challenge(api):
    response = api.get("/metrics")

    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="hub-metrics"')
    assert b"hub_requests_total" not in response.data and b"north-general" not in response.data


@pytest.mark.parametrize("wrong", ["password", "user", "scheme"])
def test_metrics_with_wrong_credentials_is_401(api, hub_settings, wrong):
    user, password = scraper_auth(hub_settings)
    headers = {}
    if wrong == "password":
        auth = (user, password + "x")
    elif wrong == "user":
        auth = ("someone-else", password)
    else:  # the right secret, but as a bearer token
        auth, headers = None, {"Authorization": f"Bearer {password}"}

    response = api.get("/metrics", auth=auth, headers=headers)

    assert_problem(response, 401)
    assert "WWW-Authenticate" in response.headers


def test_metrics_with_the_scraper_credentials_is_200(api, hub_settings):
    response = api.get("/metrics", auth=scraper_auth(hub_settings))

    assert response.status_code == 200
    assert "hub_requests_total" in response.get_data(as_text=True)


def test_metrics_endpoint_counts_requests_by_route_method_and_status(api, tokens):
    headers = tokens.headers(INVENTORY)
    before = scrape(api)

    api.get(ADMINISTRATIONS, headers=headers)
    api.get("/v1/administrations?page_size=0", headers=headers)
    response = api.get("/metrics", auth=scraper_auth(api.application.extensions["hub"].settings))

    after = response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    route = {"route": "/v1/administrations", "method": "GET"}
    for status in ("200", "422"):
        assert metric(after, "hub_requests_total", status=status, **route) == metric(
            before, "hub_requests_total", status=status, **route) + 1
    assert metric(after, "hub_request_latency_seconds_count", route="/v1/administrations") > 0
    # Routes, not paths: no query values, ids or tokens in label values.
    assert "ICU" not in after and "page_size" not in after


def test_metrics_count_cache_misses_and_hits(api, tokens):
    headers = tokens.headers(INVENTORY)
    before = scrape(api)

    assert api.get(ADMINISTRATIONS, headers=headers).headers["X-Cache"] == "MISS"
    assert api.get(ADMINISTRATIONS, headers=headers).headers["X-Cache"] == "HIT"
    assert api.get(ADMINISTRATIONS, headers=headers).headers["X-Cache"] == "HIT"

    after = scrape(api)
    for result, added in (("miss", 1), ("hit", 2)):
        labels = {"resource": "administrations", "result": result}
        assert metric(after, "hub_cache_lookups_total", **labels) == metric(
            before, "hub_cache_lookups_total", **labels) + added


def test_metrics_time_downstream_calls_by_system_and_outcome(api, tokens):
    before = scrape(api)

    api.get(ADMINISTRATIONS, headers=tokens.headers(INVENTORY))

    after = scrape(api)
    labels = {"system": "administration", "outcome": "200"}
    assert metric(after, "hub_downstream_latency_seconds_count", **labels) == metric(
        before, "hub_downstream_latency_seconds_count", **labels) + 1
    assert metric(after, "hub_downstream_latency_seconds_sum", **labels) > metric(
        before, "hub_downstream_latency_seconds_sum", **labels)
    assert metric(after, "hub_downstream_latency_seconds_bucket", le="+Inf", **labels) == metric(
        after, "hub_downstream_latency_seconds_count", **labels)


def test_metrics_show_the_circuit_breaker_open(hub_settings, migrated_database, demo_tenants,
                                               demo_administration, hub_app, monkeypatch):
    app = create_app(replace(hub_settings, hub_breaker_failures=2, hub_breaker_reset_seconds=30,
                             hub_downstream_attempts=1))
    client = app.test_client()
    headers = TokenBook(app, demo_tenants).headers(INVENTORY)
    demo_administration.admin.set_faults(error_rate=1.0)
    before = scrape(client)
    try:
        for page_size in (11, 12):
            assert client.get(f"/v1/administrations?page_size={page_size}",
                              headers=headers).status_code == 503

        after = scrape(client)

        assert metric(after, "hub_circuit_breaker_state",
                      breaker="north-general:administration") == 2  # open
        failed = {"system": "administration", "outcome": "500"}
        assert metric(after, "hub_downstream_latency_seconds_count", **failed) == metric(
            before, "hub_downstream_latency_seconds_count", **failed) + 2
        for kind, added in (("status 500", 2), ("breaker open", 1)):
            labels = {"system": "administration", "kind": kind}
            assert metric(after, "hub_downstream_errors_total", **labels) == metric(
                before, "hub_downstream_errors_total", **labels) + added
    finally:
        forget_breakers(hub_app)


# --- several gunicorn workers ---------------------------------------------------------------

@pytest.fixture
def gunicorn_api(hub_environment, migrated_database, tmp_path):
    """The API under gunicorn (2 gthread workers) with multiprocess metrics, as ``make run``
    starts it; yields its base URL and metrics folder once it answers ``/readyz`` (so every
    ``/healthz`` it counts is one the test sent)."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    with running_gunicorn(hub_environment, tmp_path / "gunicorn.log", HUB_API_WORKERS="2",
                          HUB_API_THREADS="4", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)) as port:
        yield f"http://127.0.0.1:{port}", metrics_dir


def test_every_scrape_adds_up_the_requests_of_every_gunicorn_worker(gunicorn_api, hub_settings):
    base_url, metrics_dir = gunicorn_api
    sent = [0]

    def send_healthz_burst(count: int) -> None:
        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(
                lambda _: requests.get(f"{base_url}/healthz", timeout=5).status_code,
                range(count)))
        assert statuses == [200] * count
        sent[0] += count

    def counter_files() -> set[str]:
        return {path.name for path in metrics_dir.glob("counter_*.db")}

    send_healthz_burst(40)

    def both_workers_counted_requests() -> bool:
        # Which worker accepts a connection is up to the kernel: more bursts until both have.
        if len(counter_files()) < 2:
            send_healthz_burst(20)
        return len(counter_files()) == 2

    wait_until(both_workers_counted_requests, timeout=20, interval=0.1,
               description="requests counted by both gunicorn workers")
    scraped = []
    for _ in range(8):
        with requests.get(f"{base_url}/metrics", timeout=5, auth=scraper_auth(hub_settings),
                          headers={"Connection": "close"}) as response:
            assert response.status_code == 200
            scraped.append(metric(response.text, "hub_requests_total", route="/healthz",
                                  method="GET", status="200"))

    assert sent[0] >= 40
    assert scraped == [sent[0]] * 8
