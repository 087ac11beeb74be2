"""Paging cursors are tamper-evident and bound to their list, tenant and filters: a forged,
altered or borrowed cursor is 422 naming ``cursor``, before anything reads its position."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.audit.service import AUDIT_CURSOR
from app.jobs.views import JOBS_CURSOR
from app.lookups.service import INVENTORY_CURSOR
from app.paging import MAX_CURSOR_LENGTH, CursorKind, decode_cursor, encode_cursor, integer
from app.problems import Problem
from tests.fixtures.problems import assert_problem

KEY = "test-secret"
TENANT = "7d4c6b1e-0f3a-4e8b-9c2d-5a6b7c8d9e0f"
OTHER_TENANT = "0c4a1f9e-7d2b-4e8a-9f3c-5b6d7e8f9a0b"
QUERY = {"unit": "ICU-3", "ndc11": None}
EMAR = "north-general-emar"
OPERATOR = "north-general-operator"


def _bound(**overrides) -> dict:
    return {"key": KEY, "tenant_id": TENANT, "query": QUERY, **overrides}


def _unsigned(position: dict) -> str:
    """A cursor in the shape the hub used before cursors were signed."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def _refused(kind: CursorKind, cursor, **binding) -> Problem:
    with pytest.raises(Problem) as refused:
        decode_cursor(kind, cursor, **_bound(**binding))
    assert refused.value.status == 422
    assert refused.value.errors == {"query": {"cursor": [
        "not a cursor from this API for this tenant and these filters"]}}
    return refused.value


def test_a_cursor_reads_back_its_position():
    cursor = encode_cursor(INVENTORY_CURSOR, {"s": 1, "o": 500}, **_bound())

    assert decode_cursor(INVENTORY_CURSOR, cursor, **_bound()) == {"s": 1, "o": 500}


def test_none_filters_count_as_absent_and_times_by_their_instant():
    kind = CursorKind("window", {"o": integer(0, 10)})
    since = datetime(2026, 11, 18, 8, 15, tzinfo=UTC)
    cursor = encode_cursor(kind, {"o": 1}, **_bound(query={"since": since, "unit": None}))

    assert decode_cursor(kind, cursor, **_bound(query={"since": since.astimezone()})) == {"o": 1}


def test_an_altered_position_is_refused():
    cursor = encode_cursor(INVENTORY_CURSOR, {"s": 0, "o": 100}, **_bound())
    payload, mac = cursor.split(".")
    forged = base64.urlsafe_b64encode(b'{"o":1000,"s":0}').decode().rstrip("=")

    _refused(INVENTORY_CURSOR, f"{forged}.{mac}")


def test_a_cursor_of_another_tenant_is_refused():
    cursor = encode_cursor(INVENTORY_CURSOR, {"s": 0, "o": 100}, **_bound())

    _refused(INVENTORY_CURSOR, cursor, tenant_id=OTHER_TENANT)


def test_a_cursor_of_other_filters_is_refused():
    cursor = encode_cursor(INVENTORY_CURSOR, {"s": 0, "o": 100}, **_bound())

    _refused(INVENTORY_CURSOR, cursor, query={"unit": "ICU-4"})


def test_a_cursor_of_another_list_is_refused():
    cursor = encode_cursor(INVENTORY_CURSOR, {"before": 5}, **_bound())

    _refused(AUDIT_CURSOR, cursor)


def test_a_cursor_signed_with_another_key_is_refused():
    cursor = encode_cursor(INVENTORY_CURSOR, {"s": 0, "o": 100}, **_bound(key="other"))

    _refused(INVENTORY_CURSOR, cursor)


@pytest.mark.parametrize("kind, position", [
    (INVENTORY_CURSOR, {"s": 0, "o": 1e30}),
    (INVENTORY_CURSOR, {"s": True, "o": 0}),
    (INVENTORY_CURSOR, {"s": 7, "o": 0}),
    (INVENTORY_CURSOR, {"s": 0}),
    (JOBS_CURSOR, {"created": "2026-11-20T09:41:07", "job": 5}),
    (JOBS_CURSOR, {"created": ["x"], "job": "5b0f3a0e-1d2c-4c55-9a43-0f3b1e6b3c10"}),
    (AUDIT_CURSOR, {"before": 2**63}),
    (AUDIT_CURSOR, {"before": 0}),
])
def test_positions_of_the_wrong_type_or_range_are_refused_even_when_signed(kind, position):
    _refused(kind, encode_cursor(kind, position, **_bound()))


@pytest.mark.parametrize("kind, position", [(INVENTORY_CURSOR, {"s": 0, "o": 1e30}),
                                            (AUDIT_CURSOR, {"before": 2**63})])
def test_unsigned_cursors_are_refused(kind, position):
    _refused(kind, _unsigned(position))


def test_an_overlong_cursor_is_refused_before_it_is_checked():
    _refused(INVENTORY_CURSOR, "A" * (MAX_CURSOR_LENGTH + 1) + ".x")


@given(st.text(max_size=300))
def test_arbitrary_text_is_refused_as_a_problem_never_another_error(text):
    _refused(INVENTORY_CURSOR, text)


# --- through the API -------------------------------------------------------------------------


@pytest.mark.usefixtures("clean_lookup_state")
def test_a_forged_inventory_cursor_is_422_without_downstream_call(api, tokens, demo_inventory):
    forged = _unsigned({"s": 0, "o": 1e30})

    response = api.get(f"/v1/inventory?page_size=5&cursor={forged}",
                       headers=tokens.headers(EMAR))

    assert_problem(response, 422)
    assert "cursor" in response.json["errors"]["query"]
    assert forged not in response.get_data(as_text=True)
    assert demo_inventory.admin.requests_count()["total"] == 0


@pytest.mark.usefixtures("clean_lookup_state")
def test_an_inventory_cursor_for_other_filters_is_422_and_a_genuine_one_pages_on(
        api, tokens, demo_inventory):
    first = api.get("/v1/inventory?unit=ICU-1&page_size=2", headers=tokens.headers(EMAR)).json
    cursor = first["next_cursor"]
    calls = demo_inventory.admin.requests_count()["total"]

    borrowed = api.get(f"/v1/inventory?unit=ICU-2&page_size=2&cursor={cursor}",
                       headers=tokens.headers(EMAR))
    genuine = api.get(f"/v1/inventory?unit=ICU-1&page_size=2&cursor={cursor}",
                      headers=tokens.headers(EMAR))

    assert borrowed.status_code == 422 and "cursor" in borrowed.json["errors"]["query"]
    assert genuine.status_code == 200
    assert {item["container_id"] for item in genuine.json["items"]}.isdisjoint(
        item["container_id"] for item in first["items"])
    # The genuine page is the one downstream call after the first page's.
    assert demo_inventory.admin.requests_count()["total"] > calls


@pytest.mark.usefixtures("clean_lookup_state")
def test_a_forged_administrations_cursor_is_422_without_downstream_call(
        api, tokens, demo_administration):
    forged = _unsigned({"n": "djE6MTIzOmFiYw?x=1"})

    response = api.get(f"/v1/administrations?cursor={forged}",
                       headers=tokens.headers("north-general-inventory"))

    assert response.status_code == 422
    assert "cursor" in response.json["errors"]["query"]
    assert demo_administration.admin.requests_count()["total"] == 0


def _audit_cursor_of(api, tokens, client: str) -> str:
    # Audit listing needs nothing from a worker; every request is an event, so two requests
    # make a second page of one event.
    api.get("/v1/jobs?page_size=1", headers=tokens.headers(client))
    page = api.get("/v1/audit-events?page_size=1", headers=tokens.headers(client)).json
    assert page["next_cursor"], page
    return page["next_cursor"]


def test_a_forged_jobs_cursor_with_a_non_string_job_is_422(api, tokens):
    forged = _unsigned({"created": "2026-11-20T09:41:07", "job": 5})

    response = api.get(f"/v1/jobs?cursor={forged}", headers=tokens.headers(OPERATOR))

    assert_problem(response, 422)
    assert "cursor" in response.json["errors"]["query"]


def test_a_forged_audit_cursor_past_64_bits_is_422(api, tokens):
    forged = _unsigned({"before": 2**63})

    response = api.get(f"/v1/audit-events?cursor={forged}", headers=tokens.headers(OPERATOR))

    assert response.status_code == 422
    assert "cursor" in response.json["errors"]["query"]


def test_another_tenants_audit_cursor_is_422_and_the_owners_pages_on(api, tokens):
    cursor = _audit_cursor_of(api, tokens, OPERATOR)

    stranger = api.get(f"/v1/audit-events?page_size=1&cursor={cursor}",
                       headers=tokens.headers("river-valley-operator"))
    other_filter = api.get(f"/v1/audit-events?page_size=1&outcome=denied&cursor={cursor}",
                           headers=tokens.headers(OPERATOR))
    owner = api.get(f"/v1/audit-events?page_size=1&cursor={cursor}",
                    headers=tokens.headers(OPERATOR))

    assert stranger.status_code == 422 and "cursor" in stranger.json["errors"]["query"]
    assert other_filter.status_code == 422
    assert owner.status_code == 200 and len(owner.json["items"]) == 1
