"""The smoke pipeline proves routing across queues, a chain and a chord on a real worker."""

from app.jobs.dispatch import submit_smoke_chain, submit_smoke_chord
from app.observability.context import request_id_var


def test_chain_runs_on_io_then_compute_queue(celery_worker):
    result = submit_smoke_chain(21).get(timeout=30)

    assert result == {"value": 42, "queues": ["io", "compute"]}


def test_chord_fans_out_on_io_and_totals_on_compute(celery_worker):
    result = submit_smoke_chord(25).get(timeout=60)

    assert result["total"] == sum(number * number for number in range(25))
    assert result["parts"] == 25
    assert result["header_queues"] == ["io"]
    assert result["body_queue"] == "compute"


def test_request_id_follows_work_into_the_chord_body(celery_worker):
    token = request_id_var.set("smoke-request-7")
    try:
        pending = submit_smoke_chord(3)
    finally:
        request_id_var.reset(token)

    assert pending.get(timeout=30)["request_id"] == "smoke-request-7"


def test_worker_logs_are_json_lines_with_task_ids(celery_worker):
    submit_smoke_chain(1).get(timeout=30)

    import json

    task_lines = [json.loads(line) for line in celery_worker.log_text().splitlines()
                  if line.startswith("{") and '"task_id"' in line]
    assert any(line["task_id"] for line in task_lines)
