"""Readiness checks: can this process reach its database, Redis and Celery broker?"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from kombu import Connection
from sqlalchemy import text
from sqlalchemy.engine import Engine

# A readiness probe must answer fast even when a part hangs; these bound each check.
CHECK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one readiness check. ``error`` is an exception class name, never a
    message (messages can carry connection URLs with passwords)."""

    ok: bool
    latency_ms: float
    error: str | None = None


def _timed(check) -> CheckResult:
    started = time.perf_counter()
    try:
        check()
    except Exception as error:  # any failure means "not ready"; the class name says which
        return CheckResult(False, round((time.perf_counter() - started) * 1000, 2),
                           type(error).__name__)
    return CheckResult(True, round((time.perf_counter() - started) * 1000, 2))


def check_database(engine: Engine) -> CheckResult:
    """Run ``SELECT 1`` on the hub's database."""

    def probe():
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return _timed(probe)


def check_redis(client: redis.Redis) -> CheckResult:
    """PING the hub's Redis."""
    return _timed(client.ping)


def check_broker(broker_url: str) -> CheckResult:
    """Open (and close) a connection to the Celery broker."""

    def probe():
        with Connection(broker_url, connect_timeout=CHECK_TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)

    return _timed(probe)


def readiness(*, engine: Engine, redis_client: redis.Redis, broker_url: str
              ) -> dict[str, CheckResult]:
    """Return every readiness check by the name of the part it checks."""
    return {
        "database": check_database(engine),
        "redis": check_redis(redis_client),
        "broker": check_broker(broker_url),
    }
