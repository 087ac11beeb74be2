"""Calling a hospital system without letting it take the hub down.

Each call has connect and read timeouts; idempotent reads are retried with exponential backoff
and jitter (tenacity) on connection errors, timeouts, 429 and 5xx; and each connection has a
circuit breaker (pybreaker) whose state lives in Redis, so every API process and worker sees
the same open or closed breaker.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pybreaker
import redis
import requests
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from app.observability import metrics
from app.observability.context import request_id_var

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class DownstreamError(Exception):
    """Base of connector failures. Messages are PHI-free: status codes and kinds only."""


class DownstreamUnavailable(DownstreamError):
    """The system did not answer usefully (down, timing out, 5xx, or its breaker is open)."""

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class DownstreamNotFound(DownstreamError):
    """The system answered 404 for the thing asked for."""


class DownstreamRejected(DownstreamError):
    """The system refused the hub's request (401/403/400): a configuration problem."""


class _RetryableResponse(Exception):
    def __init__(self, status: int):
        super().__init__(f"status {status}")
        self.status = status


@dataclass(frozen=True)
class CallPolicy:
    """Timeouts, retries and breaker thresholds of downstream calls."""

    connect_timeout: float
    read_timeout: float
    attempts: int
    breaker_failures: int
    breaker_reset_seconds: int


_thread_local = threading.local()
_storages: dict[tuple[str, str], pybreaker.CircuitRedisStorage] = {}
_storages_lock = threading.Lock()


def _http_session() -> requests.Session:
    # requests.Session is not guaranteed thread-safe; one per thread keeps connection reuse.
    session = getattr(_thread_local, "session", None)
    if session is None:
        session = _thread_local.session = requests.Session()
    return session


class _MetricsListener(pybreaker.CircuitBreakerListener):
    def state_change(self, breaker, old_state, new_state):
        logger.warning("circuit breaker %s: %s -> %s", breaker.name,
                       old_state.name if old_state else None, new_state.name)
        metrics.BREAKER_STATE.labels(breaker=breaker.name).set(
            {"closed": 0, "half-open": 1, "open": 2}[new_state.name])


def _storage_for(name: str, redis_url: str) -> pybreaker.CircuitBreakerStorage:
    with _storages_lock:
        storage = _storages.get((name, redis_url))
        if storage is None:
            # pybreaker's Redis storage reads bytes, so it gets its own client without
            # decode_responses.
            client = redis.Redis.from_url(redis_url, socket_connect_timeout=1.0,
                                          socket_timeout=2.0)
            try:
                storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client,
                                                        namespace=f"hub:breaker:{name}")
            except redis.RedisError:
                # The storage writes its initial state when it is made: with Redis down, this
                # call gets a breaker of its own (closed, in memory) rather than a 503, like a
                # process whose storage exists (pybreaker swallows Redis errors there). The
                # next call tries Redis again.
                logger.warning("circuit breaker %s: Redis unavailable, state kept in memory "
                               "for this call", name)
                return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
            _storages[(name, redis_url)] = storage
        return storage


_LISTENERS = [_MetricsListener()]


def breaker_for(name: str, *, redis_url: str, policy: CallPolicy) -> pybreaker.CircuitBreaker:
    """Return a breaker for connection ``name`` whose state lives in Redis, shared by every
    breaker of that name in every process.

    A new breaker object per caller, on purpose: pybreaker holds its object's lock for the
    whole guarded call (danielfm/pybreaker#55), so one shared object would let a process make
    only one downstream call at a time. The objects share the state through the storage.
    """
    return pybreaker.CircuitBreaker(
        fail_max=policy.breaker_failures, reset_timeout=policy.breaker_reset_seconds,
        state_storage=_storage_for(name, redis_url), name=name,
        exclude=[DownstreamNotFound, DownstreamRejected], listeners=_LISTENERS)


def _seconds_until_half_open(breaker: pybreaker.CircuitBreaker) -> int:
    opened_at = breaker._state_storage.opened_at  # noqa: SLF001 (public in spirit, no accessor)
    if opened_at is None:
        return breaker.reset_timeout
    opened = opened_at if opened_at.tzinfo else opened_at.replace(tzinfo=UTC)
    elapsed = (datetime.now(UTC) - opened).total_seconds()
    return max(1, int(breaker.reset_timeout - elapsed + 0.999))


def get_json(*, system: str, url: str, params: dict, headers: dict,
             breaker: pybreaker.CircuitBreaker, policy: CallPolicy) -> dict:
    """GET ``url`` and return its JSON, with timeouts, retries and the connection's breaker."""
    headers = {**headers, "Accept": "application/json"}
    request_id = request_id_var.get()
    if request_id:
        headers["X-Request-ID"] = request_id

    def attempt() -> dict:
        started = time.perf_counter()
        outcome = "error"
        try:
            response = _http_session().get(
                url, params=params, headers=headers,
                timeout=(policy.connect_timeout, policy.read_timeout))
            outcome = str(response.status_code)
        except requests.Timeout:
            outcome = "timeout"
            raise
        finally:
            metrics.DOWNSTREAM_LATENCY.labels(system=system, outcome=outcome).observe(
                time.perf_counter() - started)
        if response.status_code in RETRYABLE_STATUS:
            raise _RetryableResponse(response.status_code)
        if response.status_code == 404:
            raise DownstreamNotFound(f"{system} answered 404")
        if response.status_code >= 400:
            raise DownstreamRejected(f"{system} answered {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise _RetryableResponse(response.status_code) from None

    def with_retries() -> dict:
        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.2),
            retry=retry_if_exception(lambda error: isinstance(
                error, (requests.ConnectionError, requests.Timeout, _RetryableResponse))),
            reraise=False)
        try:
            return retrying(attempt)
        except RetryError as exhausted:
            last = exhausted.last_attempt.exception()
            kind = (f"status {last.status}" if isinstance(last, _RetryableResponse)
                    else type(last).__name__)
            metrics.DOWNSTREAM_ERRORS.labels(system=system, kind=kind).inc()
            raise DownstreamUnavailable(
                f"{system} unavailable after {policy.attempts} attempts ({kind})") from None

    try:
        return breaker.call(with_retries)
    except pybreaker.CircuitBreakerError:
        metrics.DOWNSTREAM_ERRORS.labels(system=system, kind="breaker open").inc()
        raise DownstreamUnavailable(f"{system} circuit breaker is open",
                                    retry_after=_seconds_until_half_open(breaker)) from None
