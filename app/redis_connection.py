"""The hub's Redis client (cache, rate limits, circuit-breaker state, sync status)."""

from __future__ import annotations

import redis


def make_redis(redis_url: str) -> redis.Redis:
    """Return a pooled Redis client with short timeouts: Redis answers in well under 1 ms, so
    a slow answer means it is unreachable and the hub should degrade rather than hang."""
    return redis.Redis.from_url(redis_url, socket_connect_timeout=1.0, socket_timeout=2.0,
                                health_check_interval=30, decode_responses=True)
