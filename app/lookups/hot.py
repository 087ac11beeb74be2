"""Which lookups each tenant asks for most: a per-tenant Redis sorted set of lookup → count.

A member names the lookup, the kind of consumer that asked (its PHI policy shapes the cached
answer) and the lookup's parameters: unit codes, NDCs, container ids, time windows and page
cursors, never patient data. Cache warming (app.lookups.warming) reads the top of the set and
halves the counts after each run, so the set follows what is asked now.
"""

from __future__ import annotations

import json

import redis

HOT_KEY = "hub:hot-lookups:{tenant}"
# Members kept per tenant, and the decayed count below which a member is forgotten.
MAX_TRACKED = 500
FORGET_BELOW = 0.25
# Between warming runs the set never holds more than this; past it, it is cut to MAX_TRACKED.
TRIM_TO = 2 * MAX_TRACKED


def record_use(redis_client: redis.Redis, *, tenant: str, lookup: str, consumer: str,
               args: dict) -> None:
    """Count one use of a lookup (a Redis outage only loses the count)."""
    member = json.dumps({"lookup": lookup, "consumer": consumer, "args": args},
                        sort_keys=True, separators=(",", ":"), default=str)
    key = HOT_KEY.format(tenant=tenant)
    try:
        with redis_client.pipeline(transaction=False) as pipe:
            pipe.zincrby(key, 1, member)
            pipe.zcard(key)
            _score, size = pipe.execute()
        if size > TRIM_TO:
            # Many one-off lookups (unique windows, deep pages) between two warming runs must
            # not grow the set without bound: keep the most used, and leave room for new ones
            # to be counted (trimming only to TRIM_TO would drop each newcomer at once).
            redis_client.zremrangebyrank(key, 0, -(MAX_TRACKED + 1))
    except redis.RedisError:
        pass


def hottest(redis_client: redis.Redis, tenant: str, top: int) -> list[dict]:
    """The ``top`` most used lookups of a tenant, most used first."""
    return [json.loads(member) for member in
            redis_client.zrevrange(HOT_KEY.format(tenant=tenant), 0, top - 1)]


def decay(redis_client: redis.Redis, tenant: str) -> None:
    """Halve every count, forget the rarely used, keep at most ``MAX_TRACKED``."""
    key = HOT_KEY.format(tenant=tenant)
    with redis_client.pipeline() as pipe:
        pipe.zunionstore(key, {key: 0.5})
        pipe.zremrangebyscore(key, "-inf", f"({FORGET_BELOW}")
        pipe.zremrangebyrank(key, 0, -(MAX_TRACKED + 1))
        pipe.execute()
