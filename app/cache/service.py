"""Cache of PHI-minimized canonical lookup answers.

Key: ``customer:{tenant}:product:{system}:resource:{type}:{params-hash}``. The params hash is
an HMAC (keyed with the hub's pseudonym key) over the lookup's parameters and the consumer
whose PHI policy shaped the answer, so two consumers never share an entry and parameters
cannot be recovered from a key. An entry outlives its fresh TTL by the stale window: while
the system is down, the last answer is served marked STALE.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import redis

from app.observability import metrics
from app.phi.boundary import assert_no_phi_fields


@dataclass(frozen=True)
class CachedAnswer:
    payload: dict
    fresh: bool
    stored_at: float


def cache_key(*, key_secret: str, tenant: str, system: str, resource_type: str,
              params: dict) -> str:
    """Return the Redis key of a lookup answer."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    digest = hmac.new(key_secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()[:32]
    return f"customer:{tenant}:product:{system}:resource:{resource_type}:{digest}"


def read(client: redis.Redis, key: str, *, resource_type: str) -> CachedAnswer | None:
    """Return the cached answer under ``key`` (fresh or stale), or None. A Redis outage reads
    as a miss: the cache speeds the hub up, it must not take it down."""
    try:
        raw = client.get(key)
    except redis.RedisError:
        metrics.CACHE_LOOKUPS.labels(resource=resource_type, result="error").inc()
        return None
    if raw is None:
        return None
    entry = json.loads(raw)
    return CachedAnswer(payload=entry["payload"], fresh=time.time() < entry["fresh_until"],
                        stored_at=entry["stored_at"])


def write(client: redis.Redis, key: str, payload: dict, *, fresh_seconds: int,
          stale_seconds: int) -> None:
    """Store ``payload`` (already PHI-minimized) for ``fresh_seconds`` plus the stale window.

    A payload that still holds a raw PHI field is refused (``UnsafeResult``) and not stored:
    a caller that skipped the policy fails loudly instead of filling Redis with PHI."""
    assert_no_phi_fields(payload)
    now = time.time()
    entry = {"payload": payload, "stored_at": now, "fresh_until": now + fresh_seconds}
    try:
        client.set(key, json.dumps(entry, separators=(",", ":")),
                   ex=fresh_seconds + stale_seconds)
    except redis.RedisError:
        metrics.CACHE_LOOKUPS.labels(resource="any", result="write-error").inc()
