"""Synchronous lookups, each through the request lifecycle in order: entitlement → cache →
routing to the tenant's system (timeouts, retries, breaker) → normalization (the connector) →
PHI minimization → cache. When the system is unavailable: the stale cache entry, else the hub's
own snapshot of the system where it keeps one (app.snapshots), else 503. Audit happens around
every request (app.audit)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis
from sqlalchemy.orm import Session

from app.auth.principal import Principal
from app.cache import service as cache
from app.canonical.times import to_utc
from app.connectors.base import MAPPING_ERRORS, ConnectionTarget
from app.connectors.credentials import CredentialUnavailable
from app.connectors.registry import UnsupportedCapability
from app.connectors.resilience import (
    DownstreamNotFound,
    DownstreamRejected,
    DownstreamUnavailable,
)
from app.connectors.routing import NotConnected, connection_target
from app.entitlements.service import authorize_read
from app.lookups import hot
from app.observability import metrics
from app.paging import CursorKind, decode_cursor, encode_cursor, integer, text
from app.parallel_runs import service as parallel_runs
from app.pharmacy import service as pharmacy
from app.phi.policy import RecordShapeError, minimize, minimize_many, require_policy
from app.phi.pseudonyms import Pseudonymizer, tenant_pseudonym_key
from app.problems import Problem
from app.settings import Settings, parse_cache_ttls
from app.snapshots import service as snapshots


@dataclass(frozen=True)
class LookupAnswer:
    """A minimized answer and where it came from: HIT, MISS, STALE, or SNAPSHOT (with the time
    the snapshot was taken)."""

    payload: dict
    cache_status: str | None  # None: not a cached kind of answer (the hub's own store)
    target_system: str
    synced_at: datetime | None = None


# A downstream cursor is the eMAR's own opaque token (printable ASCII); an inventory position
# is (NDC-10 spelling index, offset), with at most three spellings per NDC-11.
ADMINISTRATIONS_CURSOR = CursorKind("administrations", {"n": text(r"^[\x21-\x7e]{1,512}$")})
INVENTORY_CURSOR = CursorKind("inventory", {"s": integer(0, 2), "o": integer(0, 10**9)})
# A dispenses position is the last row's (dispense time, row id) in the hub's own store.
DISPENSES_CURSOR = CursorKind("dispenses", {
    "t": text(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?\+00:00$"),
    "i": text(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")})

Snapshot = Callable[[], tuple[dict, datetime] | None]
"""Reads the canonical answer and its snapshot time from the hub's snapshot, or None."""


def _pseudonymizer(settings: Settings, principal: Principal) -> Pseudonymizer:
    return Pseudonymizer(tenant_pseudonym_key(settings.hub_pseudonym_key,
                                              principal.tenant_id))


def _lookup(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
            principal: Principal, resource_type: str, policy_resource: str, params: dict,
            fetch: Callable[[ConnectionTarget], dict],
            minimize_payload: Callable[[dict, Pseudonymizer], dict],
            snapshot: Snapshot | None = None, refresh: bool = False) -> LookupAnswer:
    """One lookup through the lifecycle. ``refresh`` (cache warming) skips the cache read and
    answers only from the system itself, so what it writes to the cache is current."""
    access = authorize_read(db_session=db_session, tenant_id=principal.tenant_id,
                            scopes=principal.scopes, resource_type=resource_type)
    require_policy(policy_resource, principal.consumer)
    if not refresh:
        hot.record_use(redis_client, tenant=principal.tenant, lookup=resource_type,
                       consumer=principal.consumer, args=params)

    key = cache.cache_key(key_secret=settings.hub_pseudonym_key, tenant=principal.tenant,
                          system=access.product, resource_type=resource_type,
                          params={**params, "consumer": principal.consumer})
    cached = None if refresh else cache.read(redis_client, key, resource_type=resource_type)
    if cached and cached.fresh:
        metrics.CACHE_LOOKUPS.labels(resource=resource_type, result="hit").inc()
        return LookupAnswer(cached.payload, "HIT", access.product)

    snapshot_at = None
    try:
        target = connection_target(db_session=db_session, settings=settings,
                                   tenant_id=principal.tenant_id, tenant=principal.tenant,
                                   product=access.product)
        canonical = fetch(target)
    except DownstreamUnavailable as unavailable:
        if cached:
            metrics.CACHE_LOOKUPS.labels(resource=resource_type, result="stale").inc()
            return LookupAnswer(cached.payload, "STALE", access.product)
        kept = snapshot() if snapshot and not refresh else None
        if kept is None:
            raise Problem(f"The {access.product} system is unavailable; try again "
                          "later.", status=503, problem_type="downstream-unavailable",
                          retry_after=unavailable.retry_after or 5) from None
        canonical, snapshot_at = kept
    except DownstreamNotFound:
        raise Problem(f"The {access.product} system has no such record.", status=404) from None
    except (NotConnected, CredentialUnavailable):
        raise Problem(f"This tenant's {access.product} system is not connected.", status=503,
                      problem_type="not-connected", retry_after=60) from None
    except UnsupportedCapability:
        raise Problem(f"This tenant's {access.product} system does not offer this lookup.",
                      status=501, problem_type="not-offered-by-system") from None
    except (DownstreamRejected, *MAPPING_ERRORS):
        raise Problem(f"The {access.product} system gave an answer the hub cannot "
                      "use.", status=502, problem_type="bad-downstream-answer") from None

    try:
        payload = minimize_payload(canonical, _pseudonymizer(settings, principal))
    except RecordShapeError:
        raise Problem(f"The {access.product} system gave an answer the hub cannot "
                      "use.", status=502, problem_type="bad-downstream-answer") from None
    if snapshot_at is not None:
        # Never cached: the snapshot can be older than any TTL, and a cached copy would be
        # served as a fresh HIT once the system is back.
        metrics.CACHE_LOOKUPS.labels(resource=resource_type, result="snapshot").inc()
        return LookupAnswer(payload, "SNAPSHOT", access.product, synced_at=snapshot_at)
    ttl = parse_cache_ttls(settings.hub_cache_ttls).get(resource_type, 30)
    cache.write(redis_client, key, payload, fresh_seconds=ttl,
                stale_seconds=settings.hub_cache_stale_seconds)
    metrics.CACHE_LOOKUPS.labels(resource=resource_type, result="miss").inc()
    return LookupAnswer(payload, "MISS", access.product)


def list_administrations(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
                         principal: Principal, unit: str | None,
                         ndc11: str | None, since: datetime | None, until: datetime | None,
                         cursor: str | None, page_size: int, refresh: bool = False
                         ) -> LookupAnswer:
    """Return a page of the tenant's dose administrations, minimized for the caller."""
    binding = {"key": settings.hub_secret_key, "tenant_id": principal.tenant_id,
               "query": {"unit": unit, "ndc11": ndc11, "since": since, "until": until}}
    native_cursor = (decode_cursor(ADMINISTRATIONS_CURSOR, cursor, **binding)["n"]
                     if cursor else None)
    consumer = principal.consumer

    def fetch(target: ConnectionTarget) -> dict:
        records, next_native = target.call(
            "administrations_page", unit=unit, ndc11=ndc11, since=since, until=until,
            native_cursor=native_cursor, page_size=page_size)
        return {"items": records, "next_cursor": encode_cursor(
            ADMINISTRATIONS_CURSOR, {"n": next_native}, **binding) if next_native else None}

    def minimized(page: dict, pseudonymizer: Pseudonymizer) -> dict:
        return {"items": minimize_many("administration", consumer, page["items"],
                                       pseudonymizer=pseudonymizer),
                "next_cursor": page["next_cursor"]}

    params = {"unit": unit, "ndc11": ndc11, "since": since, "until": until,
              "cursor": cursor, "page_size": page_size}
    return _lookup(db_session=db_session, redis_client=redis_client, settings=settings,
                   principal=principal, resource_type="administrations",
                   policy_resource="administration", params=params, fetch=fetch,
                   minimize_payload=minimized, refresh=refresh)


def container_origin(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
                     principal: Principal, container_id: str,
                     refresh: bool = False) -> LookupAnswer:
    """Return where a container came from: medication, lot, expiry and movement chain."""
    consumer = principal.consumer
    answer = _lookup(
        db_session=db_session, redis_client=redis_client, settings=settings,
        principal=principal, resource_type="container_origin",
        policy_resource="container_origin", params={"container_id": container_id},
        fetch=lambda target: target.call("container_origin", container_id),
        minimize_payload=lambda origin, pseudonymizer: minimize(
            "container_origin", consumer, origin, pseudonymizer=pseudonymizer),
        snapshot=lambda: snapshots.snapshot_origin(
            db_session=db_session, tenant_id=uuid.UUID(principal.tenant_id),
            container_id=container_id),
        refresh=refresh)
    # Only answers the system just gave are compared: a cached, stale or snapshot answer may be
    # older than the legacy endpoint's, and cache warming is no caller's lookup.
    if answer.cache_status == "MISS" and not refresh:
        parallel_runs.shadow_lookup(
            db_session=db_session, redis_client=redis_client, settings=settings,
            tenant_id=principal.tenant_id, lookup="container_origin",
            params={"container_id": container_id}, consumer=consumer, answer=answer.payload)
    return answer


def inventory_on_hand(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
                      principal: Principal, unit: str | None,
                      ndc11: str | None, cursor: str | None, page_size: int,
                      refresh: bool = False) -> LookupAnswer:
    """Return a page of containers on hand by unit and/or medication."""
    binding = {"key": settings.hub_secret_key, "tenant_id": principal.tenant_id,
               "query": {"unit": unit, "ndc11": ndc11}}
    position = (0, 0)
    if cursor:
        decoded = decode_cursor(INVENTORY_CURSOR, cursor, **binding)
        position = (decoded["s"], decoded["o"])
    consumer = principal.consumer

    def fetch(target: ConnectionTarget) -> dict:
        items, next_position = target.call(
            "containers_on_hand", unit=unit, ndc11=ndc11, position=position, page_size=page_size)
        return {"items": items, "next_cursor": encode_cursor(
            INVENTORY_CURSOR, {"s": next_position[0], "o": next_position[1]}, **binding)
            if next_position else None}

    def minimized(page: dict, pseudonymizer: Pseudonymizer) -> dict:
        return {"items": minimize_many("container", consumer, page["items"],
                                       pseudonymizer=pseudonymizer),
                "next_cursor": page["next_cursor"]}

    def from_snapshot() -> tuple[dict, datetime] | None:
        # The snapshot keeps NDC-11s, not which NDC-10 spelling System A used: a live cursor
        # already past the first spelling has no place in its order.
        if position[0] != 0:
            return None
        kept = snapshots.snapshot_on_hand(
            db_session=db_session, tenant_id=uuid.UUID(principal.tenant_id),
            unit=unit, ndc11=ndc11, offset=position[1], page_size=page_size)
        if kept is None:
            return None
        items, next_offset, synced_at = kept
        return {"items": items, "next_cursor": encode_cursor(
            INVENTORY_CURSOR, {"s": 0, "o": next_offset}, **binding)
            if next_offset is not None else None}, synced_at

    answer = _lookup(db_session=db_session, redis_client=redis_client, settings=settings,
                     principal=principal, resource_type="inventory",
                     policy_resource="container",
                     params={"unit": unit, "ndc11": ndc11, "cursor": cursor,
                             "page_size": page_size},
                     fetch=fetch, minimize_payload=minimized, snapshot=from_snapshot,
                     refresh=refresh)
    # The first page only: a later page's position is the hub's own cursor, which the legacy
    # endpoint cannot follow. The cursor itself is not compared, for the same reason.
    if answer.cache_status == "MISS" and not refresh and cursor is None:
        parallel_runs.shadow_lookup(
            db_session=db_session, redis_client=redis_client, settings=settings,
            tenant_id=principal.tenant_id, lookup="inventory",
            params={"unit": unit, "ndc11": ndc11, "page_size": page_size},
            consumer=principal.consumer, answer={"items": answer.payload["items"]})
    return answer


def list_dispenses(*, db_session: Session, settings: Settings, principal: Principal,
                   unit: str | None, ndc11: str | None, since: datetime | None,
                   until: datetime | None, cursor: str | None, page_size: int) -> LookupAnswer:
    """Return a page of what the tenant's pharmacy dispensed, minimized for the caller.

    System C pushes its messages to the hub (HL7 v2), so the answer comes from the hub's own
    store of them (app.pharmacy), not from a downstream call: there is nothing to cache and
    no system to be unavailable. The entitlement gate and the PHI policy apply as to every
    lookup."""
    access = authorize_read(db_session=db_session, tenant_id=principal.tenant_id,
                            scopes=principal.scopes, resource_type="dispenses")
    require_policy("stored_dispense", principal.consumer)
    binding = {"key": settings.hub_secret_key, "tenant_id": principal.tenant_id,
               "query": {"unit": unit, "ndc11": ndc11, "since": since, "until": until}}
    after = None
    if cursor:
        position = decode_cursor(DISPENSES_CURSOR, cursor, **binding)
        after = (to_utc(position["t"]), uuid.UUID(position["i"]))
    records, next_position = pharmacy.dispenses_page(
        db_session=db_session, tenant_id=uuid.UUID(principal.tenant_id), unit=unit,
        ndc11=ndc11, since=since, until=until, after=after, page_size=page_size)
    next_cursor = encode_cursor(DISPENSES_CURSOR, {"t": to_utc(next_position[0]).isoformat(),
                                                   "i": str(next_position[1])}, **binding) \
        if next_position else None
    items = minimize_many("stored_dispense", principal.consumer, records,
                          pseudonymizer=_pseudonymizer(settings, principal))
    return LookupAnswer({"items": items, "next_cursor": next_cursor}, None, access.product)
