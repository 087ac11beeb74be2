"""Request metrics for every API request, and the ``/metrics`` endpoint.

``/metrics`` names every tenant and its traffic, so it answers only a scraper that sends
``HUB_METRICS_BASIC_AUTH`` (HTTP Basic); anyone else gets 401 problem+json.
"""

from __future__ import annotations

import hmac
import logging
import time

import redis
from flask import Flask, Response, g, request
from sqlalchemy.exc import SQLAlchemyError

from app.audit.service import pending_count
from app.observability import metrics
from app.parallel_runs.metrics import render_parallel_run_metrics
from app.problems import problem_response
from app.syncs.metrics import render_sync_metrics

logger = logging.getLogger(__name__)

METRICS_REALM = "hub-metrics"


def scraper_authorized(authorization, expected: str) -> bool:
    """Tell whether HTTP Basic ``authorization`` carries the ``user:password`` in ``expected``.

    Both parts are compared in constant time, and both are always compared, so the answer's
    timing says nothing about which part (or how much of it) was right.
    """
    if authorization is None or authorization.type != "basic":
        return False
    user, _, password = expected.partition(":")
    user_ok = hmac.compare_digest((authorization.username or "").encode(), user.encode())
    password_ok = hmac.compare_digest((authorization.password or "").encode(), password.encode())
    return user_ok and password_ok


def init_http_metrics(app: Flask) -> None:
    """Count and time every request by route; serve ``/metrics`` (no PHI: routes, not paths)."""

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None and request.path != "/metrics":
            route = request.url_rule.rule if request.url_rule else "unmatched"
            metrics.REQUESTS.labels(route=route, method=request.method,
                                    status=str(response.status_code)).inc()
            metrics.REQUEST_LATENCY.labels(route=route).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def prometheus_metrics():
        expected = app.extensions["hub"].settings.hub_metrics_basic_auth
        if not scraper_authorized(request.authorization, expected):
            return problem_response(
                401, detail="Metrics need the scraper's credentials (HTTP Basic).",
                headers={"WWW-Authenticate": f'Basic realm="{METRICS_REALM}", charset="UTF-8"'})
        try:
            metrics.AUDIT_PENDING.set(pending_count(redis_client=app.extensions["hub"].redis))
        except redis.RedisError:  # the gauge keeps its last value; /metrics still answers
            pass
        body, content_type = metrics.render_metrics()
        try:
            hub = app.extensions["hub"]
            body += render_sync_metrics(db_session=hub.database.session, settings=hub.settings)
        except (redis.RedisError, SQLAlchemyError):  # the request metrics still answer
            logger.warning("sync metrics unavailable for this scrape", exc_info=True)
        try:
            body += render_parallel_run_metrics(db_session=app.extensions["hub"].database.session)
        except SQLAlchemyError:
            logger.warning("parallel-run metrics unavailable for this scrape", exc_info=True)
        return Response(body, content_type=content_type)
