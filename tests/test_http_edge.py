"""The HTTP edge (app.edge): request limits (URL, headers, body size, JSON depth) answered with
problem+json, protective headers on every response, absolute URLs from the configured public
origin whatever ``Host`` says, and gunicorn's own errors as problem+json without an echo."""

from __future__ import annotations

import io
import json
import runpy
import socket
import time
import uuid

import pytest
import requests

from app.edge import limits
from app.edge.limits import json_nesting_exceeds
from app.problems import PROBLEM_CONTENT_TYPE
from app.settings import PROJECT_ROOT, SettingsError, load_settings
from app.syncs import service as syncs_service
from tests.fixtures.problems import assert_problem
from tests.fixtures.services import running_gunicorn

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

OPERATOR = "north-general-operator"  # admin, audit:read, jobs:read, jobs:write
INVENTORY = "north-general-inventory"  # reads administrations (System B)
FORGED_HOST = "evil.example"
# A value a client could type into a query or header: it must never come back.
MARKER = "Doe-Jane-MRN0042"
WINDOW = {"since": "2026-11-06T00:00:00Z", "until": "2026-11-07T00:00:00Z"}


def nested(depth: int) -> str:
    """A JSON document ``depth`` arrays deep."""
    return "[" * depth + "]" * depth


def submit_job(api, tokens, body: str, **headers: str):
    return api.post("/v1/jobs", data=body, content_type="application/json",
                    headers=tokens.headers(OPERATOR, **{"Idempotency-Key": uuid.uuid4().hex},
                                           **headers))


@pytest.fixture
def sync_id(hub_app, quiet_schedules):
    with hub_app.app_context():
        return syncs_service.sync_id_for(db_session=hub_app.extensions["hub"].database.session,
                                         kind="cache_warming", owner="north-general")


# --- JSON nesting depth ----------------------------------------------------------------------

def test_ten_thousand_levels_of_json_on_job_submission_are_400_not_500(api, tokens):
    response = submit_job(api, tokens, json.dumps(
        {"type": "administration_counts", "params": {"window": WINDOW, "x": "@"}}).replace(
        '"@"', nested(10_000)))

    body = assert_problem(response, 400)
    assert "32 levels" in body["detail"]


def test_ten_thousand_levels_of_json_on_a_sync_change_are_400_not_500(api, tokens, sync_id):
    response = api.patch(f"/v1/admin/syncs/{sync_id}", data='{"enabled": ' + nested(10_000)
                         + "}", content_type="application/json", headers=tokens.headers(OPERATOR))

    assert_problem(response, 400)


def test_unclosed_deep_json_is_400_too(api, tokens, sync_id):
    response = api.patch(f"/v1/admin/syncs/{sync_id}", data="[" * 10_000,
                         content_type="application/json", headers=tokens.headers(OPERATOR))

    assert_problem(response, 400)


def test_deep_json_in_utf16_is_400_too(api, tokens, sync_id):
    # A UTF-16 backslash-quote must not make the scan think a string runs on over the brackets.
    body = ('["\\"", ' + nested(5_000) + "]").encode("utf-16")
    response = api.patch(f"/v1/admin/syncs/{sync_id}", data=body,
                         content_type="application/json", headers=tokens.headers(OPERATOR))

    assert_problem(response, 400)


def test_a_legitimate_job_is_accepted(api, tokens, celery_worker):
    response = submit_job(api, tokens, json.dumps(
        {"type": "administration_counts", "params": {"window": WINDOW}}))

    assert response.status_code == 202, response.json


def test_a_legitimate_sync_change_is_accepted(api, tokens, sync_id):
    response = api.patch(f"/v1/admin/syncs/{sync_id}", json={"enabled": False},
                         headers=tokens.headers(OPERATOR))

    assert response.status_code == 200, response.json


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = json.dumps({"note": "[" * 1000, "escaped": '\\"[[[[', "list": [[["ok"]]]})

    assert not json_nesting_exceeds(text.encode(), 32)
    assert json_nesting_exceeds(nested(33).encode(), 32)
    assert not json_nesting_exceeds(nested(32).encode(), 32)
    # A string that never closes hides nothing after it: the parser refuses the body anyway.
    assert not json_nesting_exceeds(b'"' + b"[" * 1000, 32)


def test_the_depth_scan_of_a_megabyte_stays_linear():
    # Escaped quotes in a string that never closes: a backtracking scan would be quadratic here
    # (minutes); a linear one takes milliseconds.
    hostile = b"[" * 40 + b'a"' + b'\\"' * 500_000
    started = time.perf_counter()

    assert json_nesting_exceeds(hostile, 32)
    assert time.perf_counter() - started < 2


# --- body size -------------------------------------------------------------------------------

def test_a_body_over_the_limit_is_413_before_it_is_read(api, tokens):
    big = json.dumps({"type": "administration_counts",
                      "params": {"window": WINDOW, "pad": "x" * 2_000_000}})

    body = assert_problem(submit_job(api, tokens, big), 413)

    assert "1048576 bytes" in body["detail"]


def test_a_chunked_body_over_the_limit_is_413(api, tokens):
    big = json.dumps({"type": "administration_counts",
                      "params": {"window": WINDOW, "pad": "x" * 2_000_000}}).encode()

    response = api.post("/v1/jobs", input_stream=io.BytesIO(big),
                        content_type="application/json",
                        headers=tokens.headers(OPERATOR, **{"Idempotency-Key": uuid.uuid4().hex,
                                                            "Transfer-Encoding": "chunked"}),
                        environ_overrides={"wsgi.input_terminated": True})

    assert_problem(response, 413)


# --- URL and header bounds -------------------------------------------------------------------

def test_a_url_over_the_limit_is_414_problem_json_without_echo(api, tokens):
    response = api.get("/v1/administrations?unit=" + MARKER * 400,
                       headers=tokens.headers(INVENTORY))

    assert_problem(response, 414)
    assert MARKER not in response.get_data(as_text=True)


def test_too_large_or_too_many_headers_are_431_problem_json_without_echo(api):
    too_large = api.get("/healthz", headers={"X-Note": MARKER * 300})
    too_many = api.get("/healthz", headers={f"X-Note-{n}": MARKER for n in range(60)})

    for response in (too_large, too_many):
        assert_problem(response, 431)
        assert MARKER not in response.get_data(as_text=True)


def test_gunicorn_limits_sit_above_the_apps(hub_environment):
    config = runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))

    assert config["limit_request_line"] > limits.MAX_URL_LENGTH + len("DELETE  HTTP/1.1")
    assert config["limit_request_fields"] > limits.MAX_HEADER_COUNT
    assert config["limit_request_field_size"] > limits.MAX_HEADER_FIELD_BYTES


# --- response headers ------------------------------------------------------------------------

def _every_kind_of_response(api, tokens):
    operator = tokens.headers(OPERATOR)
    reader = tokens.headers(INVENTORY)
    return {
        "lookup": api.get("/v1/administrations?page_size=2", headers=reader),
        "fhir": api.get("/v1/administrations?page_size=2",
                        headers={**reader, "Accept": "application/fhir+json"}),
        "inventory": api.get("/v1/inventory?page_size=2", headers=tokens.headers(
            "north-general-emar")),
        "jobs": api.get("/v1/jobs", headers=operator),
        "dead letters": api.get("/v1/dead-letters", headers=operator),
        "audit events": api.get("/v1/audit-events?page_size=2", headers=operator),
        "token": api.post("/v1/oauth/token", data={"grant_type": "client_credentials"}),
        "unauthorized": api.get("/v1/jobs"),
        "not found": api.get("/v1/no-such-thing", headers=operator),
        "validation error": api.get("/v1/administrations?page_size=0", headers=reader),
        "healthz": api.get("/healthz"),
        "openapi": api.get("/openapi.json"),
        "docs": api.get("/docs"),
        "metrics": api.get("/metrics"),
    }


def test_every_response_is_no_store_and_nosniff(api, tokens):
    responses = _every_kind_of_response(api, tokens)

    for name, response in responses.items():
        assert response.headers.get("X-Content-Type-Options") == "nosniff", name
        assert response.headers.get("Cache-Control") == "no-store", name
    for name in ("lookup", "fhir", "inventory", "jobs", "dead letters", "audit events"):
        assert responses[name].status_code == 200, name


def test_docs_assets_stay_cacheable_but_nosniff(api):
    response = api.get("/docs/assets/swagger-ui.css")

    assert response.status_code == 200
    assert "max-age=3600" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# --- public origin ---------------------------------------------------------------------------

def _no_forged_host(response) -> None:
    for name, value in response.headers.items():
        assert FORGED_HOST not in value, name
    assert FORGED_HOST not in response.get_data(as_text=True)


def test_a_forged_host_never_reaches_location_or_status_url(api, tokens, hub_settings,
                                                           celery_worker):
    response = submit_job(api, tokens, json.dumps(
        {"type": "administration_counts", "params": {"window": WINDOW}}), Host=FORGED_HOST)

    assert response.status_code == 202, response.json
    _no_forged_host(response)
    expected = f"{hub_settings.hub_public_base_url}/v1/jobs/{response.json['id']}"
    assert response.headers["Location"] == response.json["status_url"] == expected
    job = api.get(f"/v1/jobs/{response.json['id']}",
                  headers=tokens.headers(OPERATOR, Host=FORGED_HOST))
    _no_forged_host(job)
    assert job.json["status_url"] == expected


def test_a_forged_host_never_reaches_fhir_bundle_links(api, tokens, hub_settings):
    response = api.get("/v1/administrations?page_size=2", base_url=f"http://{FORGED_HOST}/",
                       headers=tokens.headers(INVENTORY, Accept="application/fhir+json"))

    assert response.status_code == 200, response.json
    _no_forged_host(response)
    links = {link["relation"]: link["url"] for link in response.json["link"]}
    assert links["self"].startswith(f"{hub_settings.hub_public_base_url}/v1/administrations?")
    assert links["next"].startswith(f"{hub_settings.hub_public_base_url}/v1/administrations?")


def test_the_public_base_url_defaults_to_the_api_address_and_must_be_an_origin(tmp_path):
    environment = {"HUB_DATA_DIR": str(tmp_path), "HUB_API_HOST": "10.0.0.5",
                   "HUB_API_PORT": "9000"}

    assert load_settings(environment).hub_public_base_url == "http://10.0.0.5:9000"
    assert load_settings({**environment, "HUB_PUBLIC_BASE_URL": "https://hub.example/"}
                         ).hub_public_base_url == "https://hub.example"
    for bad in ("hub.example", "ftp://hub.example", "https://hub.example/api",
                "https://user:pw@hub.example", "https://hub.example:99999"):
        with pytest.raises(SettingsError, match="HUB_PUBLIC_BASE_URL"):
            load_settings({**environment, "HUB_PUBLIC_BASE_URL": bad})


# --- gunicorn ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gunicorn_api(hub_environment, migrated_database, tmp_path_factory):
    """The API under gunicorn with the project's gunicorn.conf.py; yields its host and port."""
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with running_gunicorn(hub_environment, log_path, HUB_API_WORKERS="1", HUB_API_THREADS="2",
                          PROMETHEUS_MULTIPROC_DIR=None) as port:
        yield ("127.0.0.1", port), log_path


def raw_exchange(address, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is and read the whole answer (the server closes the connection)."""
    with socket.create_connection(address, timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in
               (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def assert_server_problem(answer, status: int) -> None:
    code, headers, body = answer
    assert code == status, body[:300]
    assert headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert headers["x-content-type-options"] == "nosniff"
    assert json.loads(body)["status"] == status
    assert MARKER.encode() not in body


@pytest.mark.parametrize(("request_bytes", "status"), [
    pytest.param(b"GET /v1/administrations?unit=" + MARKER.encode() * 600 + b" HTTP/1.1\r\n"
                 b"Host: hub\r\n\r\n", 414, id="overlong request line"),
    pytest.param(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Note: " + MARKER.encode() * 600
                 + b"\r\n\r\n", 431, id="oversized header"),
    pytest.param(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n"
                 + b"".join(b"X-Note-%d: %s\r\n" % (n, MARKER.encode()) for n in range(120))
                 + b"\r\n", 431, id="too many headers"),
    pytest.param(b"GET /v1/administrations?unit=" + MARKER.encode() + b" HTTP/9.x\r\n\r\n", 400,
                 id="malformed request line"),
])
def test_gunicorn_answers_its_own_errors_with_problem_json_without_echo(
        gunicorn_api, request_bytes, status):
    address, log_path = gunicorn_api

    assert_server_problem(raw_exchange(address, request_bytes), status)
    assert MARKER not in log_path.read_text(errors="replace")


def test_a_5000_character_unit_through_gunicorn_is_a_clean_4xx_problem(gunicorn_api, tokens):
    (host, port), log_path = gunicorn_api

    response = requests.get(f"http://{host}:{port}/v1/administrations",
                            params={"unit": (MARKER * 400)[:5000]},
                            headers=tokens.headers(INVENTORY), timeout=10)

    assert 400 <= response.status_code < 500
    assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert response.json()["request_id"]
    assert MARKER not in response.text
    assert MARKER not in log_path.read_text(errors="replace")


def test_a_chunked_body_over_the_limit_through_gunicorn_is_413(gunicorn_api, tokens):
    (host, port), _log = gunicorn_api
    chunks = (b"x" * 65536 for _ in range(40))  # 2.5 MiB, no Content-Length

    response = requests.post(f"http://{host}:{port}/v1/jobs", data=chunks,
                             headers=tokens.headers(OPERATOR, **{
                                 "Idempotency-Key": uuid.uuid4().hex,
                                 "Content-Type": "application/json"}), timeout=30)

    assert response.status_code == 413
    assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
