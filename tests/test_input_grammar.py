"""Every input's grammar, through the API: ids, codes and timestamps are bounded ASCII, unknown
parameters are named, errors never repeat a value outside its grammar, and stored times carry
their offset."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

import pytest

from app.jobs.schemas import DeadLetterSchema
from tests.fixtures.jobs import OPERATOR, submit
from tests.fixtures.problems import problem_fields
from tests.fixtures.processes import wait_until

EMAR = "north-general-emar"            # reads inventory
INVENTORY = "north-general-inventory"  # reads administrations


def submit_counts(api, tokens, params: dict):
    return submit(api, tokens, {"type": "administration_counts", "params": params})


WINDOW = {"since": "2026-11-18T00:00:00Z", "until": "2026-11-19T00:00:00Z"}


@pytest.fixture(scope="module")
def seeded_patients(demo_administration) -> list[str]:
    """Names and MRNs of five of the synthetic patients the eMAR was seeded with."""
    patients = demo_administration.admin.export_phi()["patients"][:5]
    return [value for patient in patients for value in (patient["full_name"], patient["mrn"])]


# --- path parameters (B7) --------------------------------------------------------------------

@pytest.mark.usefixtures("clean_lookup_state")
@pytest.mark.parametrize("container_path", [
    "NGH-C00000001%23",                         # '#': the rest became a fragment
    "NGH-C00000001%3Funit=ICU-3",               # '?': smuggled a query string
    "NGH-C00000001%2F..%2FNGH-C00000002",       # '/': another resource
    "%2E%2E",
    "..",
    "NGH-C00000001%25",
    "x" * 65,
])
def test_container_ids_outside_the_id_grammar_are_422_without_downstream_call(
        api, tokens, demo_inventory, container_path):
    response = api.get(f"/v1/containers/{container_path}/origin", headers=tokens.headers(EMAR))

    assert "container_id" in problem_fields(response, "path")
    assert demo_inventory.admin.requests_count()["total"] == 0


@pytest.mark.usefixtures("clean_lookup_state")
def test_a_container_id_of_the_grammar_still_reaches_the_inventory(api, tokens, demo_inventory):
    container_id = demo_inventory.get("north-general", "/containers", status="dispensed",
                                      limit=1).json()["items"][0]["containerId"]

    response = api.get(f"/v1/containers/{container_id}/origin", headers=tokens.headers(EMAR))

    assert response.status_code == 200
    assert response.json["container_id"] == container_id


# --- codes and timestamps (B13, B16) ---------------------------------------------------------

@pytest.mark.usefixtures("clean_lookup_state")
@pytest.mark.parametrize("query, field", [
    ("unit=ıcu-3", "unit"),
    ("unit=ſICU-3", "unit"),
    ("unit=ICU-٣", "unit"),
    ("unit=ICU-" + "9" * 4000, "unit"),
    ("medication=０４０９-４８８８-０２", "medication"),
    ("medication=٠٤٠٩-٤٨٨٨-٠٢", "medication"),
    ("since=0001-01-01T00:00:00%2B14:00", "since"),
    ("until=9999-12-31T23:59:59-14:00", "until"),
    ("cursor=" + "A" * 2000, "cursor"),  # over its 1,024, under the URL limit
])
def test_lookalike_overlong_and_edge_values_are_422_without_downstream_call(
        api, tokens, demo_administration, query, field):
    response = api.get(f"/v1/administrations?{quote(query, safe='=%')}",
                       headers=tokens.headers(INVENTORY))

    assert field in problem_fields(response, "query")
    assert demo_administration.admin.requests_count()["total"] == 0


@pytest.mark.usefixtures("clean_lookup_state")
@pytest.mark.parametrize("query", ["unit=ıcu-3", "medication=０４０９-４８８８-０２"])
def test_inventory_refuses_non_ascii_codes(api, tokens, demo_inventory, query):
    response = api.get(f"/v1/inventory?{quote(query, safe='=')}", headers=tokens.headers(EMAR))

    assert problem_fields(response, "query")
    assert demo_inventory.admin.requests_count()["total"] == 0


@pytest.mark.parametrize("query, field", [
    ("since=0001-01-01T00:00:00%2B14:00", "since"),
    ("until=9999-12-31T23:59:59-14:00", "until"),
    ("client_id=Jane%20Canary", "client_id"),
    ("operation=" + "x" * 200, "operation"),
])
def test_audit_filters_at_the_edges_are_422(api, tokens, query, field):
    response = api.get(f"/v1/audit-events?{query}", headers=tokens.headers(OPERATOR))

    assert field in problem_fields(response, "query")


@pytest.mark.parametrize("params, path", [
    ({"window": {"since": "0001-01-01T00:00:00+14:00", "until": "2026-11-19T00:00:00Z"}},
     ("window", "since")),
    ({"window": {"since": "2026-11-18T00:00:00Z", "until": "9999-12-31T23:59:59-14:00"}},
     ("window", "until")),
    ({"window": WINDOW, "units": ["ICU-" + "9" * 100_000]}, ("units", "0")),
    ({"window": WINDOW, "units": ["ſICU-3"]}, ("units", "0")),
    ({"window": WINDOW, "medication": "٠٤٠٩-٤٨٨٨-٠٢"}, ("medication",)),
])
def test_job_params_at_the_edges_are_422(api, tokens, params, path):
    response = submit_counts(api, tokens, params)

    errors = problem_fields(response, "json")["params"]
    for key in path:
        errors = errors[key]
    assert errors


# --- unknown parameters (C) ------------------------------------------------------------------

@pytest.mark.usefixtures("clean_lookup_state")
@pytest.mark.parametrize("url, client, name", [
    ("/v1/administrations?medicaton=00409488802", INVENTORY, "medicaton"),
    ("/v1/inventory?limit=5", EMAR, "limit"),
    ("/v1/jobs?state=failed", OPERATOR, "state"),
    ("/v1/audit-events?limit=5", OPERATOR, "limit"),
    ("/v1/dead-letters?status=replayed", OPERATOR, "status"),
    ("/v1/admin/syncs?tenant=river-valley", OPERATOR, "tenant"),
    ("/v1/containers/NGH-C00000001/origin?unit=ICU-3", EMAR, "unit"),
    ("/v1/jobs/5b0f3a0e-1d2c-4c55-9a43-0f3b1e6b3c10?fields=result", OPERATOR, "fields"),
])
def test_unknown_query_parameters_of_each_list_and_read_are_422_naming_them(
        api, tokens, demo_administration, demo_inventory, url, client, name):
    response = api.get(url, headers=tokens.headers(client))

    assert problem_fields(response, "query") == {name: ["Unknown field."]}
    assert demo_administration.admin.requests_count()["total"] == 0
    assert demo_inventory.admin.requests_count()["total"] == 0


@pytest.mark.usefixtures("clean_lookup_state")
@pytest.mark.parametrize("method, url, body", [
    ("POST", "/v1/jobs?priority=high", {"type": "administration_counts",
                                        "params": {"window": WINDOW}}),
    ("DELETE", "/v1/jobs/5b0f3a0e-1d2c-4c55-9a43-0f3b1e6b3c10?force=1", None),
    ("POST", "/v1/dead-letters/0f8c2c51-6a39-4f7e-9a44-5b1f1f0c2d11/replay?force=1", None),
    ("PATCH", "/v1/admin/syncs/0f8c2c51-6a39-4f7e-9a44-5b1f1f0c2d11?force=1", {"enabled": True}),
    ("POST", "/v1/admin/syncs/0f8c2c51-6a39-4f7e-9a44-5b1f1f0c2d11/run?force=1", None),
])
def test_unknown_query_parameters_of_each_change_are_422_and_nothing_changes(
        api, tokens, hub_app, method, url, body):
    from sqlalchemy import select

    from app.jobs.models import Job

    key = f"unknown-parameter-{method.lower()}-{len(url)}"
    response = api.open(url, method=method, json=body,
                        headers=tokens.headers(OPERATOR, **{"Idempotency-Key": key}))

    [name] = problem_fields(response, "query")
    assert name in url
    with hub_app.app_context():
        session = hub_app.extensions["hub"].database.session
        assert session.scalar(select(Job).where(Job.idempotency_key == key)) is None


def test_an_unknown_parameter_named_like_a_patient_is_counted_not_repeated(
        api, tokens, seeded_patients):
    name = seeded_patients[0]

    response = api.get(f"/v1/jobs?{quote(name)}=1", headers=tokens.headers(OPERATOR))

    assert set(problem_fields(response, "query")) == {"_unknown"}
    assert name not in response.get_data(as_text=True)


# --- error bodies never repeat values (B14) --------------------------------------------------

@pytest.mark.usefixtures("clean_lookup_state")
def test_unknown_units_are_named_by_position_never_by_value(api, tokens, seeded_patients):
    name, mrn = seeded_patients[0], seeded_patients[1]

    for value in (name, mrn):  # a name reads as a unit code (JANE-DOE), an MRN does not
        response = submit_counts(api, tokens, {"window": WINDOW, "units": ["ICU-1", value]})

        assert set(problem_fields(response, "json")["params"]["units"]) == {"1"}
        body = response.get_data(as_text=True).upper()
        assert value.upper() not in body
        assert value.upper().replace(" ", "-") not in body
        assert mrn[3:] not in body  # the MRN's digits, as a unit number


@pytest.mark.usefixtures("clean_lookup_state")
def test_field_errors_name_the_rule_and_never_repeat_a_seeded_identifier(
        api, tokens, seeded_patients):
    name = seeded_patients[0]
    value = quote(name)
    responses = [
        api.get(f"/v1/administrations?unit={value}&medication={value}&since={value}"
                f"&page_size={value}&cursor={value}", headers=tokens.headers(INVENTORY)),
        api.get(f"/v1/jobs?status={value}&type={value}&cursor={value}",
                headers=tokens.headers(OPERATOR)),
        api.get(f"/v1/audit-events?outcome={value}&request_id={value}&resource_type={value}",
                headers=tokens.headers(OPERATOR)),
        api.get(f"/v1/containers/{value}/origin", headers=tokens.headers(EMAR)),
        submit_counts(api, tokens, {"window": {"since": name, "until": name},
                                    "medication": name, "group_by": [name],
                                    "suppress_below": name}),
    ]

    for response in responses:
        assert response.status_code == 422, response.get_data(as_text=True)
        assert name not in response.get_data(as_text=True)


# --- stored times (C) ------------------------------------------------------------------------

@pytest.mark.usefixtures("clean_lookup_state", "celery_worker")
def test_job_times_are_rfc_3339_with_an_offset_on_sqlite(api, tokens):
    submitted = submit_counts(api, tokens, {"window": WINDOW, "units": ["ED-1"]})
    assert submitted.status_code == 202, submitted.json
    seen = {}

    def finished() -> bool:
        seen["job"] = api.get(f"/v1/jobs/{submitted.json['id']}",
                              headers=tokens.headers(OPERATOR)).json
        return seen["job"]["finished_at"] is not None

    wait_until(finished, timeout=90, interval=0.2, description="the job to finish")
    listed = api.get("/v1/jobs?page_size=1", headers=tokens.headers(OPERATOR)).json["items"][0]
    for job in (seen["job"], listed, submitted.json):
        for name in ("created_at", "started_at", "finished_at"):
            if job[name] is not None:
                assert job[name].endswith("Z"), (name, job[name])
                assert datetime.fromisoformat(job[name]).utcoffset() is not None


def test_dead_letter_times_carry_their_offset_whatever_the_database_returns():
    shown = DeadLetterSchema().dump({"created_at": datetime(2026, 11, 20, 9, 41, 7),
                                     "replayed_at": None})

    assert shown["created_at"] == "2026-11-20T09:41:07Z"
    assert shown["replayed_at"] is None
