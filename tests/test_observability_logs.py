"""JSON log lines carry request ids; identifier-shaped text is scrubbed as a second defense;
routine work writes no INFO lines; every job and sync line names its tenant."""

import io
import json
import logging
import runpy
import uuid

import pytest

from app.observability.context import request_id_var
from app.observability.logs import json_handler
from app.phi.redaction import SCRUBBED, scrub
from tests.fixtures.processes import wait_until


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    logger = logging.getLogger(f"hub.test.{id(stream)}")
    logger.addHandler(json_handler(stream))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_are_json_with_the_current_request_id(log_lines):
    logger, lines = log_lines
    token = request_id_var.set("req-123")
    try:
        logger.info("lookup done", extra={"latency_ms": 3.2})
    finally:
        request_id_var.reset(token)

    line = lines()[0]
    assert line["message"] == "lookup done" and line["request_id"] == "req-123"
    assert line["latency_ms"] == 3.2 and line["level"] == "INFO" and line["time"]


@pytest.mark.parametrize("leak", ["MRN00012345", "mrn: 1234567", "123-45-6789",
                                  "jane.canary@example.org", "(555) 123-4567", "555-123-4567"])
def test_identifier_shaped_text_is_scrubbed_from_messages_and_extras(log_lines, leak):
    logger, lines = log_lines

    logger.warning("downstream said %s", leak, extra={"detail": f"value {leak}"})

    line = lines()[0]
    assert leak not in json.dumps(line)
    assert SCRUBBED in line["message"] and SCRUBBED in line["detail"]


@pytest.mark.parametrize("harmless", ["2026-11-18T13:15:00Z", "ICU-3", "00409488802",
                                      "NGH-A000001234", "latency 12.5 ms"])
def test_operational_values_are_left_alone(harmless):
    assert scrub(harmless) == harmless


# --- an idle stack's log stays readable; job and sync lines name their tenant ---------------

OPERATOR = "north-general-operator"


def worker_lines(celery_worker) -> list[dict]:
    """The worker's JSON log lines so far (Celery's start-up banner is not JSON)."""
    lines = []
    for text in celery_worker.log_text().splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue
    return lines


def lines_about(celery_worker, marker: str) -> list[dict]:
    """The worker's lines that mention ``marker`` (a task or job id) anywhere."""
    return [line for line in worker_lines(celery_worker) if marker in json.dumps(line)]


@pytest.mark.parametrize("task_name", ["hub.maintenance.write_audit_events",
                                       "hub.maintenance.reconcile_jobs"])
def test_periodic_maintenance_with_nothing_to_do_writes_no_info_line(celery_worker, task_name):
    from app.jobs.dispatch import celery_client

    # Beat sends these without a stored result; these runs store one so the test can wait.
    # The first run does what earlier tests left to do (audit events of their requests).
    celery_client().send_task(task_name, ignore_result=False).get(timeout=30)
    result = celery_client().send_task(task_name, ignore_result=False)
    assert not result.get(timeout=30)  # nothing to do: no events written, no merges sent
    marker = celery_client().send_task("hub.io.smoke_echo", args=(1,), ignore_result=False)
    marker.get(timeout=30)
    # The worker writes a task's lines before it stores its result, and the marker's success
    # line proves the log has been flushed past the routine task.
    wait_until(lambda: lines_about(celery_worker, marker.id), timeout=10,
               description="the marker task's log line")

    assert lines_about(celery_worker, result.id) == []


def test_audit_writer_logs_a_line_when_it_wrote_events(celery_worker, hub_app, api, tokens):
    from app.jobs.dispatch import celery_client

    api.get("/v1/audit-events?page_size=1", headers=tokens.headers(OPERATOR))  # one event
    result = celery_client().send_task("hub.maintenance.write_audit_events",
                                       ignore_result=False)
    written = result.get(timeout=30)
    wait_until(lambda: lines_about(celery_worker, result.id), timeout=10,
               description="the audit writer's line")

    lines = lines_about(celery_worker, result.id)
    assert written >= 1
    assert [(line["level"], line["message"]) for line in lines] == [
        ("INFO", "audit events written")]
    assert lines[0]["events"] == written


def test_every_log_line_of_a_job_names_its_tenant(celery_worker, api, tokens,
                                                  demo_administration):
    truth = demo_administration.admin.ground_truth("north-general")
    submitted = api.post("/v1/jobs", headers=tokens.headers(
        OPERATOR, **{"Idempotency-Key": f"logs-{uuid.uuid4().hex}"}), json={
        "type": "administration_counts", "params": {
            "window": {"since": truth["window_start"], "until": truth["window_end"]},
            "units": ["ICU-3"]}})
    assert submitted.status_code == 202, submitted.json
    job_id = submitted.json["id"]

    def merged() -> bool:  # the merge task's success line names the job
        return any("merge" in line["message"] for line in lines_about(celery_worker, job_id))

    wait_until(merged, timeout=60, interval=0.2, description="the job's merge to be logged")
    lines = lines_about(celery_worker, job_id)

    assert len(lines) >= 3  # plan, unit, merge
    assert {line["tenant"] for line in lines} == {"north-general"}


def test_a_sync_runs_log_lines_name_its_tenant(celery_worker, hub, quiet_schedules):
    from app.syncs import service

    schedule_id = service.sync_id_for(db_session=hub.database.session,
                                      kind="inventory_snapshot", owner="north-general")
    service.update_sync(db_session=hub.database.session, settings=hub.settings,
                        schedule_id=schedule_id, tenant_id=None, actor="test",
                        schedule="3600", enabled=True)
    task_id = service.trigger_sync(db_session=hub.database.session,
                                   schedule_id=schedule_id, tenant_id=None)["task_id"]

    wait_until(lambda: any(line["message"].startswith("sync run")
                           for line in lines_about(celery_worker, task_id)),
               timeout=60, interval=0.2, description="the sync run's log line")
    lines = lines_about(celery_worker, task_id)

    assert {line["tenant"] for line in lines} == {"north-general"}


def test_routine_celery_lines_are_debug_lines_and_failures_keep_their_level():
    stream = io.StringIO()
    logger = logging.getLogger("celery.beat")
    handler = json_handler(stream, routine_tasks=frozenset({"hub.maintenance.tick"}))
    logger.addHandler(handler)
    trace = logging.getLogger("celery.app.trace")
    trace.addHandler(handler)
    root_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    try:
        logger.info("Scheduler: Sending due task %s (%s)", "tick", "hub.maintenance.tick")
        trace.info("Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
                   {"name": "hub.maintenance.tick", "id": "1", "runtime": 0.1,
                    "return_value": 0}, extra={"data": {"name": "hub.maintenance.tick"}})
        trace.info("Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
                   {"name": "hub.io.run_job_unit", "id": "2", "runtime": 0.1,
                    "return_value": 0}, extra={"data": {"name": "hub.io.run_job_unit"}})
        trace.error("Task %(name)s[%(id)s] raised unexpected: %(exc)s",
                    {"name": "hub.maintenance.tick", "id": "3", "exc": "boom"},
                    extra={"data": {"name": "hub.maintenance.tick"}})
    finally:
        logger.removeHandler(handler)
        trace.removeHandler(handler)
        logging.getLogger().setLevel(root_level)

    written = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["level"], line["message"].split()[1]) for line in written] == [
        ("INFO", "hub.io.run_job_unit[2]"), ("ERROR", "hub.maintenance.tick[3]")]


def test_demo_systems_write_no_access_log_unless_asked(monkeypatch):
    from demo_systems.serving import GUNICORN_CONF

    monkeypatch.delenv("DEMO_ACCESS_LOG", raising=False)
    assert runpy.run_path(str(GUNICORN_CONF))["accesslog"] is None
    monkeypatch.setenv("DEMO_ACCESS_LOG", "1")
    assert runpy.run_path(str(GUNICORN_CONF))["accesslog"] == "-"


def test_probes_and_scrapes_write_debug_access_lines_unless_refused(api, hub_settings, caplog):
    caplog.set_level(logging.INFO, logger="hub.access")
    user, _, password = hub_settings.hub_metrics_basic_auth.partition(":")

    assert api.get("/healthz").status_code == 200
    assert api.get("/metrics", auth=(user, password)).status_code == 200
    assert api.get("/metrics").status_code == 401

    access = [(record.levelname, record.route, record.status) for record in caplog.records
              if record.name == "hub.access"]
    assert access == [("INFO", "/metrics", 401)]
