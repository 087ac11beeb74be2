"""The request hooks: one audit event per /v1 request, queued in Redis (one RPUSH, no SQL), or
written to the database at once when Redis is down."""

import logging
import uuid
from dataclasses import replace

import pytest
from flask import Flask, g
from sqlalchemy import select

from app.audit.chain import verify_chain
from app.audit.hooks import init_audit
from app.audit.models import AuditEvent
from app.audit.records import AuditRecord
from app.audit.service import PENDING_KEY
from app.auth.principal import Principal
from app.observability.requests import init_request_context
from app.problems import register_problem_handlers
from app.redis_connection import make_redis
from tests.fixtures.processes import free_port


@pytest.fixture
def audit_queue(hub_app):
    """The hub's Redis with an empty audit queue (the session's Redis is shared: only this key
    is cleared)."""
    client = hub_app.extensions["hub"].redis
    client.delete(PENDING_KEY)
    yield client
    client.delete(PENDING_KEY)


def _queued(queue, request_id: str) -> list[AuditRecord]:
    records = [AuditRecord.from_json(entry) for entry in queue.lrange(PENDING_KEY, 0, -1)]
    return [record for record in records if record.request_id == request_id]


def _stored(hub_app, request_id: str) -> list[AuditEvent]:
    with hub_app.app_context():
        session = hub_app.extensions["hub"].database.session
        return list(session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id)))


def _request_id() -> str:
    return f"audit-test-{uuid.uuid4().hex}"


def _probe_app(hub_resources) -> Flask:
    """A small app with the hub's request context, error handling and audit hooks, and views
    that act as an authenticated client would."""
    app = Flask(__name__)
    app.extensions["hub"] = hub_resources
    init_request_context(app)
    init_audit(app)
    register_problem_handlers(app)
    tenant_id = str(uuid.uuid4())

    @app.before_request
    def _as_client():
        g.principal = Principal(tenant_id=tenant_id, tenant="probe-hospital",
                                client_id="probe-emar", product="administration",
                                scopes=frozenset({"administrations:read"}))

    @app.get("/v1/patients/<string:mrn>/doses")
    def doses(mrn: str):
        g.audit_resource_type = "administrations"
        g.audit_target_system = "administration"
        return {"count": 0}

    @app.get("/v1/broken")
    def broken():
        raise RuntimeError("MRN-CANARY-7 in an exception message")

    @app.get("/healthz")
    def healthz():
        return {"status": "alive"}

    app.config["TENANT_ID"] = tenant_id
    return app


def test_each_v1_request_is_queued_in_redis_and_not_written_to_sql(api, hub_app, audit_queue):
    request_id = _request_id()

    response = api.get("/v1/audit-events", headers={"X-Request-ID": request_id})

    assert response.status_code == 401
    [record] = _queued(audit_queue, request_id)
    assert (record.operation, record.outcome, record.status_code) == (
        "audit.list_audit_events", "denied", 401)
    assert record.tenant_id is None and record.client_id is None
    assert isinstance(record.latency_ms, int) and record.latency_ms >= 0
    assert _stored(hub_app, request_id) == []


def test_the_token_endpoint_is_audited_without_naming_the_claimed_client(api, audit_queue):
    request_id = _request_id()

    response = api.post("/v1/oauth/token", headers={"X-Request-ID": request_id},
                        data={"grant_type": "client_credentials", "client_id": "no-such-client",
                              "client_secret": "not-the-secret"})

    assert response.status_code == 401
    [record] = _queued(audit_queue, request_id)
    assert (record.operation, record.outcome, record.client_id) == ("oauth.issue_token",
                                                                    "denied", None)


def test_an_unknown_v1_path_is_audited_too(api, audit_queue):
    request_id = _request_id()

    api.get("/v1/no-such-thing", headers={"X-Request-ID": request_id})

    [record] = _queued(audit_queue, request_id)
    assert record.operation == "unmatched"


def test_requests_outside_v1_are_not_audited(api, audit_queue):
    request_id = _request_id()

    assert api.get("/healthz", headers={"X-Request-ID": request_id}).status_code == 200

    assert _queued(audit_queue, request_id) == []


def test_the_event_names_the_client_and_what_it_touched_never_the_path_or_query(hub_app,
                                                                                audit_queue):
    probe = _probe_app(hub_app.extensions["hub"])
    request_id = _request_id()

    response = probe.test_client().get("/v1/patients/MRN-CANARY-7/doses?name=MRN-CANARY-7",
                                       headers={"X-Request-ID": request_id})

    assert response.status_code == 200
    [raw] = [entry for entry in audit_queue.lrange(PENDING_KEY, 0, -1) if request_id in entry]
    assert "MRN-CANARY-7" not in raw
    record = AuditRecord.from_json(raw)
    assert record.tenant_id == probe.config["TENANT_ID"]
    assert (record.client_id, record.operation, record.resource_type, record.target_system,
            record.outcome) == ("probe-emar", "doses", "administrations", "administration",
                                "success")


def test_an_unhandled_error_is_audited_as_error(hub_app, audit_queue):
    probe = _probe_app(hub_app.extensions["hub"])
    request_id = _request_id()

    response = probe.test_client().get("/v1/broken", headers={"X-Request-ID": request_id})

    assert response.status_code == 500
    [record] = _queued(audit_queue, request_id)
    assert (record.operation, record.outcome, record.status_code) == ("broken", "error", 500)


def test_with_redis_down_the_event_is_written_to_sql_at_once(hub_app, audit_queue, caplog):
    unreachable = make_redis(f"redis://127.0.0.1:{free_port()}/0")
    probe = _probe_app(replace(hub_app.extensions["hub"], redis=unreachable))
    request_id = _request_id()

    with caplog.at_level(logging.WARNING, logger="app.audit.service"):
        response = probe.test_client().get("/v1/patients/MRN-CANARY-7/doses?dob=1957-06-14",
                                           headers={"X-Request-ID": request_id})

    assert response.status_code == 200
    [row] = _stored(hub_app, request_id)
    assert (row.operation, row.outcome, row.client_id) == ("doses", "success", "probe-emar")
    assert _queued(audit_queue, request_id) == []
    warnings = [record for record in caplog.records if record.name == "app.audit.service"]
    assert warnings and all("MRN-CANARY-7" not in str(record.__dict__) and
                            "1957-06-14" not in str(record.__dict__) for record in warnings)
    with hub_app.app_context():
        assert verify_chain(hub_app.extensions["hub"].database.session).ok
