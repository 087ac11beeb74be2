"""``GET /v1/audit-events``: scope, tenant isolation, filters, paging, field errors, no PHI."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from app.audit.service import PENDING_KEY
from tests.fixtures.factories import client_row, tenant_row
from tests.fixtures.problems import assert_problem
from tests.fixtures.tenants import minted_token


@dataclass
class TenantClients:
    """A fresh tenant with an audit admin and a client without ``audit:read``."""

    tenant_id: str
    admin_id: str
    admin: dict
    reader_id: str
    reader: dict


def _bearer(hub, *, tenant, client_id: str, scopes: list[str]) -> dict:
    token = minted_token(hub, tenant_id=str(tenant.id), tenant=tenant.slug, client_id=client_id,
                         scopes=scopes)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_tenant(hub_app):
    """Create tenants with clients in the database and tokens for them."""
    hub = hub_app.extensions["hub"]
    hub.redis.delete(PENDING_KEY)

    def make() -> TenantClients:
        with hub_app.app_context():
            session = hub.database.session
            tenant = tenant_row(session, slug="audit")
            slug = tenant.slug
            for suffix, scopes in (("admin", ["audit:read"]), ("reader", ["inventory:read"])):
                client_row(session, tenant=tenant, client_id=f"{slug}-{suffix}", scopes=scopes)
            session.commit()
            return TenantClients(
                tenant_id=str(tenant.id),
                admin_id=f"{slug}-admin",
                admin=_bearer(hub, tenant=tenant, client_id=f"{slug}-admin",
                              scopes=["audit:read"]),
                reader_id=f"{slug}-reader",
                reader=_bearer(hub, tenant=tenant, client_id=f"{slug}-reader",
                               scopes=["inventory:read"]))

    yield make
    hub.redis.delete(PENDING_KEY)


def _call(api, headers: dict, path: str = "/v1/audit-events", **params):
    request_id = f"view-test-{uuid.uuid4().hex}"
    response = api.get(path, headers={**headers, "X-Request-ID": request_id},
                       query_string=params)
    return request_id, response


def _events(api, tenant: TenantClients, **params) -> list[dict]:
    response = api.get("/v1/audit-events", headers=tenant.admin,
                       query_string={"page_size": 500, **params})
    assert response.status_code == 200, response.json
    return response.json["items"]


def test_without_a_token_the_answer_is_401(api):
    response = api.get("/v1/audit-events")

    assert_problem(response, 401)


def test_without_the_audit_read_scope_the_answer_is_403(api, make_tenant):
    tenant = make_tenant()

    response = api.get("/v1/audit-events", headers=tenant.reader)

    assert response.status_code == 403
    assert response.json["type"].endswith("/insufficient-scope")


def test_the_list_includes_requests_up_to_now_without_waiting_for_beat(api, make_tenant):
    tenant = make_tenant()
    request_id, denied = _call(api, tenant.reader)
    assert denied.status_code == 403

    [event] = _events(api, tenant, request_id=request_id)

    assert event["tenant_id"] == tenant.tenant_id
    assert (event["client_id"], event["operation"], event["resource_type"], event["outcome"],
            event["status_code"]) == (tenant.reader_id, "audit.list_audit_events",
                                      "audit_events", "denied", 403)
    assert datetime.fromisoformat(event["occurred_at"]).utcoffset() == timedelta(0)
    assert set(event) == {"event_id", "occurred_at", "request_id", "tenant_id", "client_id",
                          "operation", "resource_type", "target_system", "outcome",
                          "status_code", "latency_ms"}


def test_an_admin_sees_only_their_own_tenants_events(api, make_tenant):
    north, south = make_tenant(), make_tenant()
    north_ids = [_call(api, north.reader)[0], _call(api, north.admin)[0]]
    south_ids = [_call(api, south.reader)[0], _call(api, south.admin)[0]]

    north_events = _events(api, north)
    south_events = _events(api, south)

    assert {event["tenant_id"] for event in north_events} == {north.tenant_id}
    assert set(north_ids) <= {event["request_id"] for event in north_events}
    assert not set(south_ids) & {event["request_id"] for event in north_events}
    assert {event["tenant_id"] for event in south_events} == {south.tenant_id}


def test_filters_narrow_the_list(api, make_tenant):
    tenant = make_tenant()
    denied_id, _ = _call(api, tenant.reader)
    success_id, _ = _call(api, tenant.admin)
    now = datetime.now(UTC)

    denied = _events(api, tenant, outcome="denied")
    by_client = _events(api, tenant, client_id=tenant.admin_id)
    by_operation = _events(api, tenant, operation="audit.list_audit_events",
                           resource_type="audit_events")
    recent = _events(api, tenant, since=(now - timedelta(minutes=5)).isoformat())
    # An offset other than UTC means the same instant.
    before = _events(api, tenant, until=(now - timedelta(minutes=5)).astimezone(
        datetime.now().astimezone().tzinfo).isoformat())

    assert [event["request_id"] for event in denied] == [denied_id]
    assert success_id in {event["request_id"] for event in by_client}
    assert {event["client_id"] for event in by_client} == {tenant.admin_id}
    assert {denied_id, success_id} <= {event["request_id"] for event in by_operation}
    assert {denied_id, success_id} <= {event["request_id"] for event in recent}
    assert before == []


def test_paging_walks_every_event_once_newest_first(api, make_tenant):
    tenant = make_tenant()
    for _ in range(7):
        _call(api, tenant.reader)
    expected = [event["event_id"] for event in _events(api, tenant)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"page_size": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/audit-events", headers=tenant.admin, query_string=params).json
        pages += 1
        seen += [event["event_id"] for event in page["items"] if event["event_id"] in expected]
        cursor = page["next_cursor"]
        if not cursor:
            break

    assert len(expected) == 7  # a listing's own event is queued after it answers
    assert seen == expected and len(set(seen)) == len(seen)
    assert pages >= 3


@pytest.mark.parametrize(("params", "field"), [
    ({"since": "yesterday"}, "since"),
    ({"since": "2026-11-24T08:00:00"}, "since"),  # no offset: which hospital's clock?
    ({"since": "2026-11-24T08:00:00Z", "until": "2026-11-23T08:00:00Z"}, "until"),
    ({"page_size": 501}, "page_size"),
    ({"page_size": 0}, "page_size"),
    ({"outcome": "maybe"}, "outcome"),
    ({"cursor": "not-a-cursor"}, "cursor"),
])
def test_bad_parameters_are_422_with_field_errors(api, make_tenant, params, field):
    tenant = make_tenant()

    response = api.get("/v1/audit-events", headers=tenant.admin, query_string=params)

    assert_problem(response, 422)
    assert field in response.json["errors"]["query"]


def test_query_string_values_never_reach_the_audit_trail(api, make_tenant, hub_app):
    tenant = make_tenant()
    canary = "MRN-CANARY-7"
    _call(api, tenant.reader, path="/v1/administrations", patient=canary)
    _call(api, tenant.admin, resource_type=canary, mrn=canary)
    _call(api, {}, path="/v1/audit-events", mrn=canary)
    queued = hub_app.extensions["hub"].redis.lrange(PENDING_KEY, 0, -1)
    assert queued and not [entry for entry in queued if canary in entry]

    stored = _events(api, tenant)

    assert len(stored) >= 2
    assert canary not in str(stored)


def test_the_endpoint_is_documented_with_its_scope_and_parameters(api):
    spec = api.get("/openapi.json").json
    operation = spec["paths"]["/v1/audit-events"]["get"]

    assert operation["security"] == [{"oauth2": ["audit:read"]}]
    assert {"since", "until", "operation", "outcome", "resource_type", "client_id",
            "request_id", "cursor", "page_size"} <= {p["name"] for p in operation["parameters"]}
    assert {"200", "401", "403", "422"} <= set(operation["responses"])
    assert operation["responses"]["200"]["content"]["application/json"]["example"]["items"]
