"""Prometheus metrics of the hub (prometheus_client).

Under gunicorn, several worker processes serve ``/metrics``; with ``PROMETHEUS_MULTIPROC_DIR``
set (``make run`` sets it), every process writes its samples there and a scrape aggregates
all of them, so the figures do not depend on which worker answers.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("hub_requests_total", "API requests by route, method and status.",
                   ["route", "method", "status"])
REQUEST_LATENCY = Histogram("hub_request_latency_seconds", "API request latency by route.",
                            ["route"], buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                                                5, 10))
CACHE_LOOKUPS = Counter("hub_cache_lookups_total", "Cache lookups by resource and result "
                        "(hit, miss, stale, snapshot).", ["resource", "result"])
DOWNSTREAM_LATENCY = Histogram("hub_downstream_latency_seconds", "Latency of calls to hospital "
                               "systems by system and outcome (status code, timeout, error).",
                               ["system", "outcome"], buckets=(.005, .01, .025, .05, .1, .25,
                                                               .5, 1, 2.5, 5, 10))
DOWNSTREAM_ERRORS = Counter("hub_downstream_errors_total", "Failed downstream reads (after "
                            "retries) by system and kind.", ["system", "kind"])
BREAKER_STATE = Gauge("hub_circuit_breaker_state", "Circuit breaker state per connection: "
                      "0 closed, 1 half-open, 2 open.", ["breaker"],
                      multiprocess_mode="mostrecent")
AUDIT_PENDING = Gauge("hub_audit_events_pending", "Audit events buffered in Redis, not yet "
                      "written to the audit table (alert when it keeps growing).",
                      multiprocess_mode="mostrecent")
INVALID_RECORDS = Counter("hub_invalid_downstream_records_total", "Downstream records skipped "
                          "because they could not be mapped to the canonical schema.",
                          ["system", "resource"])
HL7_MESSAGES = Counter("hub_hl7_messages_total", "HL7 v2 messages received, by transport "
                       "(mllp, http), message type (RDE^O11, ..., or unreadable) and the ACK code "
                       "answered (AA, AE, AR).", ["transport", "message_type", "ack_code"])
HL7_DUPLICATES = Counter("hub_hl7_duplicates_total", "HL7 v2 messages answered AA again "
                         "without processing: the sender resent a control id already stored.",
                         ["transport"])
MLLP_CONNECTIONS_REFUSED = Counter("hub_mllp_connections_refused_total", "MLLP connections the "
                                   "listener closed, by reason (too_many_connections, idle, "
                                   "framing, oversize).", ["reason"])
MLLP_CONNECTIONS = Gauge("hub_mllp_connections", "Open MLLP connections.",
                         multiprocess_mode="livesum")

EVENTS_PUBLISHED = Counter("hub_events_published_total", "Canonical events stored for fan-out, by "
                           "type.", ["type"])
WEBHOOK_DELIVERIES = Counter("hub_webhook_deliveries_total", "Webhook delivery attempts by "
                             "outcome (delivered, failed, dead_lettered, refused).", ["outcome"])
WEBHOOK_QUEUE_LAG = Histogram("hub_webhook_queue_lag_seconds", "Seconds between a webhook "
                              "delivery falling due and its attempt starting.",
                              buckets=(.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900))

JOB_TASKS_REDISPATCHED = Counter("hub_job_tasks_redispatched_total", "Job tasks the orphan "
                                 "reconciler sent again because no live worker held them (a "
                                 "killed worker, a task lost in an outage), by task (unit, "
                                 "plan).", ["task"])
JOB_TASK_OUTAGE_RETRIES = Counter("hub_job_task_outage_retries_total", "Retries of job tasks "
                                  "because the database or Redis was unavailable, by task.",
                                  ["task"])


def render_metrics() -> tuple[bytes, str]:
    """Return the exposition text of every process's metrics and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
