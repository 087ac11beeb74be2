"""Per-request context: the request id (accepted from ``X-Request-ID`` or made) and an access
log line without query strings (they can carry identifiers)."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from app.observability.context import accept_request_id, request_id_var, tenant_var

REQUEST_ID_HEADER = "X-Request-ID"
logger = logging.getLogger("hub.access")
# Probes and scrapes arrive every few seconds from the platform and Prometheus: a line each
# would be most of the log. Answered normally they are DEBUG lines; a refusal or error is not.
ROUTINE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def init_request_context(app: Flask) -> None:
    """Give every request an id, echo it back, and log one access line per request."""

    @app.before_request
    def _start_request() -> None:
        g.request_started = time.perf_counter()
        g.request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_id_token = request_id_var.set(g.request_id)
        g.tenant_token = tenant_var.set(None)

    @app.after_request
    def _finish_request(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
            latency_ms = round((time.perf_counter() - g.request_started) * 1000, 2)
            routine = request.path in ROUTINE_PATHS and response.status_code < 400
            logger.log(logging.DEBUG if routine else logging.INFO, "request", extra={
                "method": request.method,
                "route": request.url_rule.rule if request.url_rule else None,
                "status": response.status_code,
                "latency_ms": latency_ms,
            })
        return response

    @app.teardown_request
    def _end_request(_error=None) -> None:
        for name, var in (("request_id_token", request_id_var), ("tenant_token", tenant_var)):
            token = g.pop(name, None)
            if token is not None:
                var.reset(token)
