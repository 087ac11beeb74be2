"""JSON log lines carry request ids; identifier-shaped text is scrubbed as a second defense."""

import io
import json
import logging

import pytest

from app.observability.context import request_id_var
from app.observability.logs import json_handler
from app.phi.redaction import SCRUBBED, scrub


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
