"""Authorization before validation: every operation checks the scope its view declares before
any parameter or body is parsed, and a /v1 view that declares none is refused."""

import uuid

import pytest
from flask import Flask

from app.audit.hooks import init_audit
from app.audit.records import AuditRecord
from app.audit.service import PENDING_KEY
from app.auth.principal import init_bearer_auth, init_scope_check, requires_scopes
from app.observability.requests import init_request_context
from app.problems import register_problem_handlers
from tests.fixtures.problems import assert_problem

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

EMAR = "north-general-emar"  # holds inventory:read and dispenses:read
INVENTORY_CLIENT = "north-general-inventory"  # holds administrations:read and dispenses:read
OPERATOR = "north-general-operator"  # holds admin, audit:read, jobs:read, jobs:write

# An invalid request for each protected operation: every query parameter and body is wrong,
# and each would be a 422 if it were validated first.
_INVALID_QUERY = {"page_size": "many", "since": "yesterday", "until": "x", "status": "lost",
                  "type": 7, "outcome": "maybe", "medication": "not-an-ndc"}
_INVALID_JSON_BODY = {"type": 5, "params": "none", "schedule": {"nested": True}, "extra": 1}


def _protected_operations(api) -> list[tuple[str, str, str]]:
    document = api.get("/openapi.json").json
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or not operation.get("security"):
                continue
            [requirement] = operation["security"]
            [scopes] = requirement.values()
            concrete = path.replace("{", "").replace("}", "")  # /v1/jobs/job_id: any id
            found.append((method, concrete, scopes[0]))
    return found


def _client_without(tokens, scope: str) -> str:
    """A demo client whose scopes lack ``scope``."""
    return next(client for client in (INVENTORY_CLIENT, EMAR, OPERATOR)
                if scope not in tokens.credentials[client].scopes.split())


def test_every_protected_operation_answers_403_before_validating_its_input(api, tokens):
    operations = _protected_operations(api)
    assert len(operations) >= 14

    for method, path, scope in operations:
        headers = tokens.headers(_client_without(tokens, scope))  # no Idempotency-Key either
        response = api.open(path, method=method.upper(), query_string=_INVALID_QUERY,
                            json=_INVALID_JSON_BODY if method in ("post", "patch") else None,
                            headers=headers)

        assert_problem(response, 403, "insufficient-scope")
        assert f'scope="{scope}"' in response.headers["WWW-Authenticate"]


def test_a_job_without_jobs_write_and_an_invalid_body_is_403_not_422(api, tokens):
    response = api.post("/v1/jobs", data="{not json", content_type="application/json",
                        headers=tokens.headers(EMAR))

    assert response.status_code == 403
    assert "jobs:write" in response.json["detail"]


def test_a_lookup_without_its_scope_and_an_invalid_query_is_403_not_422(api, tokens,
                                                                        demo_administration):
    response = api.get("/v1/administrations?page_size=0&since=soon",
                       headers=tokens.headers(EMAR))

    assert response.status_code == 403
    assert response.json["type"].endswith("/insufficient-scope")
    assert demo_administration.admin.requests_count()["total"] == 0


def test_with_the_scope_the_same_invalid_input_is_a_422(api, tokens):
    response = api.get("/v1/administrations?page_size=0",
                       headers=tokens.headers(INVENTORY_CLIENT))

    assert response.status_code == 422
    assert "page_size" in response.json["errors"]["query"]


def test_a_refusal_before_the_view_is_audited_with_the_views_resource_type(api, tokens,
                                                                           hub_app):
    request_id = f"scope-test-{uuid.uuid4().hex}"

    response = api.post("/v1/jobs", json={"type": 5}, headers=tokens.headers(
        EMAR, **{"X-Request-ID": request_id}))

    assert response.status_code == 403
    queued = [AuditRecord.from_json(entry) for entry in
              hub_app.extensions["hub"].redis.lrange(PENDING_KEY, 0, -1)]
    [record] = [record for record in queued if record.request_id == request_id]
    assert (record.operation, record.resource_type, record.outcome) == (
        "jobs.submit_job", "jobs", "denied")


def test_a_v1_view_that_declares_no_scope_is_refused(hub_app, tokens):
    probe = Flask(__name__)
    probe.extensions["hub"] = hub_app.extensions["hub"]
    init_request_context(probe)
    init_audit(probe)
    register_problem_handlers(probe)
    init_bearer_auth(probe)
    init_scope_check(probe)

    @probe.get("/v1/forgotten")
    def forgotten():
        return {"secret": "should not be reached"}

    @probe.get("/v1/declared")
    @requires_scopes("inventory:read")
    def declared():
        return {"ok": True}

    client = probe.test_client()
    headers = tokens.headers(EMAR)

    assert client.get("/v1/forgotten", headers=headers).status_code == 403
    assert client.get("/v1/declared", headers=headers).status_code == 200


def test_an_unentitled_tenant_with_the_scope_and_an_invalid_query_is_403_not_422(
        api, tokens, demo_inventory):
    # lakeside-clinic owns no inventory product; its eMAR client still holds inventory:read.
    response = api.get("/v1/inventory?page_size=0&unit=%D9%A3&medication=none",
                       headers=tokens.headers("lakeside-clinic-emar"))

    assert response.status_code == 403, response.json
    assert response.json["type"].endswith("/not-entitled")
    assert demo_inventory.admin.requests_count()["total"] == 0
