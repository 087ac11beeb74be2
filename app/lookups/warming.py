"""Cache warming: each tenant's most requested lookups (app.lookups.hot), refreshed by a
scheduled sync through the same lookup path as a client's (entitlement, routing,
normalization, PHI minimization, cache write), before their cache entries expire."""

from __future__ import annotations

from datetime import datetime

import redis
from sqlalchemy.orm import Session

from app.auth.principal import Principal
from app.entitlements.service import RESOURCES
from app.lookups import hot, service
from app.phi.policy import PolicyMissing
from app.problems import Problem
from app.settings import Settings
from app.tenants.models import Tenant

WARMING_CLIENT = "hub:cache-warming"

_LOOKUPS = {"administrations": service.list_administrations,
            "container_origin": service.container_origin,
            "inventory": service.inventory_on_hand}
_TIME_ARGS = frozenset({"since", "until"})


def _decoded(args: dict) -> dict:
    return {name: datetime.fromisoformat(value) if name in _TIME_ARGS and value else value
            for name, value in args.items()}


def _principal(tenant: Tenant, lookup: str, consumer: str) -> Principal:
    # The consumer decides the PHI policy (and so the cache entry) of the answer; the scope is
    # the one that reads the resource, so the entitlement check runs as it does for a client.
    return Principal(tenant_id=str(tenant.id), tenant=tenant.slug, client_id=WARMING_CLIENT,
                     product=None if consumer == "operator" else consumer,
                     scopes=frozenset({RESOURCES[lookup].scope}))


def warm_cache(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
               tenant: Tenant) -> dict:
    """Refresh the tenant's hottest lookups in the cache; report what happened to them.

    Raises a ``warming-incomplete`` Problem (the run fails) when a system was unavailable for some of
    them; lookups that no longer exist (404) or are no longer allowed are counted, not failed.
    """
    candidates = hot.hottest(redis_client, tenant.slug, settings.hub_cache_warming_top)
    refreshed = unavailable = gone = refused = 0
    for candidate in candidates:
        lookup = _LOOKUPS.get(candidate.get("lookup"))
        if lookup is None:
            continue
        try:
            lookup(db_session=db_session, redis_client=redis_client, settings=settings,
                   principal=_principal(tenant, candidate["lookup"], candidate["consumer"]),
                   refresh=True, **_decoded(candidate["args"]))
            refreshed += 1
        except Problem as failed:
            if failed.status == 404:
                gone += 1
            elif failed.status >= 500:  # the system is unavailable or answered unusably
                unavailable += 1
            else:  # the client would be refused too (entitlement or scope gone)
                refused += 1
        except PolicyMissing:
            refused += 1
    hot.decay(redis_client, tenant.slug)
    if unavailable:
        raise Problem(f"{unavailable} of {len(candidates)} hot lookups could not be "
                      "refreshed: their system is unavailable.", problem_type="warming-incomplete")
    return {"candidates": len(candidates), "refreshed": refreshed, "unavailable": unavailable,
            "not_found": gone, "refused": refused}
