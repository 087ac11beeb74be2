"""Parallel runs: their configuration, the shadow call's hand-off on the request path, the
comparison in a worker, and the report.

On the request path (:func:`shadow_lookup`) the hub only decides by sampling, keeps its own
answer in Redis under an opaque id and sends a task with that id: the legacy endpoint is
called by the worker (:func:`compare`), after the caller has its answer, through its own
circuit breaker, so a slow or dead legacy link neither delays nor changes the live answer.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.connectors.base import MAPPING_ERRORS, ConnectionTarget
from app.connectors.credentials import CredentialUnavailable, resolve_credential
from app.connectors.registry import connector_named
from app.connectors.resilience import (
    DownstreamNotFound,
    DownstreamRejected,
    DownstreamUnavailable,
    breaker_for,
)
from app.connectors.routing import call_policy
from app.database import utcnow
from app.jobs import dispatch
from app.parallel_runs.comparison import Difference, differences, disclosed_fields, shown_value
from app.parallel_runs.models import ParallelRun, ParallelRunDifference
from app.phi.boundary import assert_no_phi_fields
from app.phi.policy import RecordShapeError, minimize, minimize_many
from app.phi.pseudonyms import Pseudonymizer, tenant_pseudonym_key
from app.problems import Problem
from app.settings import Settings, redact_url
from app.tenants.models import Tenant
from app.tenants.service import get_active_connection

logger = logging.getLogger(__name__)

STASH_PREFIX = "hub:parallel-run:"
# Differences kept of one comparison: an answer that differs everywhere is one fact, and must
# not push every other comparison's differences out of the kept window.
DIFFERENCES_PER_COMPARISON = 25
RECENT_DIFFERENCES = 50
TOP_FIELDS = 10
OUTCOMES = ("match", "mismatch", "legacy_error")


@dataclass(frozen=True)
class ShadowedLookup:
    """A lookup that can run in parallel with a legacy endpoint: how the legacy connector
    answers it from the lookup's parameters (canonical), how that answer is minimized (the PHI
    policy the hub's own answer went through, for the same consumer), and under which policy
    and path prefix its fields are named in the report."""

    name: str
    policy_resource: str
    legacy_answer: Callable[[ConnectionTarget, dict], object]
    minimized: Callable[[object, str, Pseudonymizer], dict]
    field_prefix: str = ""
    # The system behind both links: the legacy link reads the live connection's code maps.
    product: str = "inventory"
    # The registered connector (app.connectors.registry) that speaks the old link.
    legacy_connector: str = "inventory-legacy"


SHADOWED_LOOKUPS: dict[str, ShadowedLookup] = {
    "container_origin": ShadowedLookup(
        "container_origin", "container_origin",
        lambda target, params: target.call("container_origin", params["container_id"]),
        lambda origin, consumer, pseudonymizer: minimize(
            "container_origin", consumer, origin, pseudonymizer=pseudonymizer)),
    # The first page only (a later page's cursor is the hub's own), without its cursor.
    "inventory": ShadowedLookup(
        "inventory", "container",
        lambda target, params: target.call(
            "containers_on_hand", unit=params["unit"], ndc11=params["ndc11"], position=(0, 0),
            page_size=params["page_size"])[0],
        lambda containers, consumer, pseudonymizer: {"items": minimize_many(
            "container", consumer, containers, pseudonymizer=pseudonymizer)},
        field_prefix="items[]."),
}


# --- configuration -------------------------------------------------------------------------

_UNSET = object()


def _invalid(**errors: str) -> Problem:
    return Problem("The request has invalid fields; see errors.", status=422,
                   errors={"json": {name: [message] for name, message in errors.items()}})


def _checked_settings(*, lookup: str, legacy_base_url, legacy_credential_ref, legacy_timezone,
                      sample_rate) -> None:
    errors: dict[str, str] = {}
    if lookup not in SHADOWED_LOOKUPS:
        errors["lookup"] = f"one of {', '.join(sorted(SHADOWED_LOOKUPS))}"
    if legacy_base_url is not _UNSET:
        parts = urlsplit(legacy_base_url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
                or parts.fragment or len(legacy_base_url) > 500:
            errors["legacy_base_url"] = "an http(s) URL with a host, without query or fragment"
    if legacy_credential_ref is not _UNSET and (
            not isinstance(legacy_credential_ref, str)
            or legacy_credential_ref.partition(":")[0] not in ("env", "file")
            or not legacy_credential_ref.partition(":")[2] or len(legacy_credential_ref) > 200):
        errors["legacy_credential_ref"] = "env:NAME or file:PATH"
    if legacy_timezone is not _UNSET:
        try:
            ZoneInfo(legacy_timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            errors["legacy_timezone"] = "an IANA time zone (America/New_York)"
    if sample_rate is not _UNSET and not (
            isinstance(sample_rate, int | float) and not isinstance(sample_rate, bool)
            and 0.0 <= sample_rate <= 1.0):
        errors["sample_rate"] = "a fraction of lookups from 0 to 1"
    if errors:
        raise _invalid(**errors)


def configure_parallel_run(*, db_session: Session, tenant_id: str, lookup: str, actor: str,
                           legacy_base_url=_UNSET, legacy_credential_ref=_UNSET,
                           legacy_timezone=_UNSET, sample_rate=_UNSET,
                           enabled: bool | None = None) -> dict:
    """Create or change the tenant's parallel run of ``lookup`` (the hub's operators: the legacy
    endpoint and its credential reference are theirs to set, as for connections)."""
    _checked_settings(lookup=lookup, legacy_base_url=legacy_base_url,
                      legacy_credential_ref=legacy_credential_ref,
                      legacy_timezone=legacy_timezone, sample_rate=sample_rate)
    run = db_session.scalar(select(ParallelRun).where(
        ParallelRun.tenant_id == uuid.UUID(tenant_id), ParallelRun.lookup == lookup))
    if run is None:
        if legacy_base_url is _UNSET or legacy_credential_ref is _UNSET:
            raise _invalid(legacy_base_url="a new parallel run needs the legacy endpoint and "
                                           "its credential reference")
        run = ParallelRun(tenant_id=uuid.UUID(tenant_id), lookup=lookup, legacy_timezone="UTC",
                          sample_rate=1.0, enabled=True, comparisons=0, matches=0,
                          mismatches=0, legacy_errors=0)
        db_session.add(run)
    for name, value in (("legacy_base_url", legacy_base_url),
                        ("legacy_credential_ref", legacy_credential_ref),
                        ("legacy_timezone", legacy_timezone), ("sample_rate", sample_rate)):
        if value is not _UNSET:
            setattr(run, name, value.rstrip("/") if name == "legacy_base_url" else value)
    if enabled is not None:
        run.enabled = enabled
    run.updated_by = actor
    run.updated_at = utcnow()
    db_session.commit()
    return get_parallel_run(db_session=db_session, run_id=str(run.id), tenant_id=tenant_id)


def _find(db_session: Session, run_id: str, tenant_id: str | None) -> ParallelRun:
    """The run with this id, visible to ``tenant_id`` (None: the hub's operators); another
    tenant's run is 404, like a missing one."""
    try:
        run = db_session.get(ParallelRun, uuid.UUID(str(run_id)))
    except ValueError:
        run = None
    if run is None or (tenant_id is not None and str(run.tenant_id) != tenant_id):
        raise Problem("No such parallel run.", status=404)
    return run


def change_parallel_run(*, db_session: Session, run_id: str, tenant_id: str | None, actor: str,
                        sample_rate=_UNSET, enabled: bool | None = None) -> dict:
    """Change a run's sampling or switch it on or off (a tenant's admin: its own runs only)."""
    run = _find(db_session, run_id, tenant_id)
    return configure_parallel_run(db_session=db_session, tenant_id=str(run.tenant_id),
                                  lookup=run.lookup, actor=actor, sample_rate=sample_rate,
                                  enabled=enabled)


def run_id_for(*, db_session: Session, tenant_id: str, lookup: str) -> str:
    """The id of the tenant's parallel run of ``lookup``."""
    run = db_session.scalar(select(ParallelRun).where(
        ParallelRun.tenant_id == uuid.UUID(tenant_id), ParallelRun.lookup == lookup))
    if run is None:
        raise Problem(f"No parallel run of {lookup} for this tenant.", status=404)
    return str(run.id)


# --- the report ----------------------------------------------------------------------------

def _iso(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _summary(run: ParallelRun, tenant_slug: str) -> dict:
    compared = run.matches + run.mismatches
    return {
        "id": str(run.id), "tenant": tenant_slug, "lookup": run.lookup,
        # A URL may carry a password in its user part: never shown.
        "legacy_base_url": redact_url(run.legacy_base_url),
        "legacy_credential_ref": run.legacy_credential_ref,
        "legacy_timezone": run.legacy_timezone, "sample_rate": run.sample_rate,
        "enabled": run.enabled,
        "counts": {"comparisons": run.comparisons, "matches": run.matches,
                   "mismatches": run.mismatches, "legacy_errors": run.legacy_errors},
        "mismatch_rate": round(run.mismatches / compared, 4) if compared else None,
        "last_legacy_error": run.last_legacy_error,
        "last_compared_at": _iso(run.last_compared_at),
        "updated_at": _iso(run.updated_at), "updated_by": run.updated_by,
    }


def list_parallel_runs(*, db_session: Session, tenant_id: str | None) -> list[dict]:
    """Every parallel run the viewer may see (a tenant: its own; None: all), with its counts."""
    query = select(ParallelRun, Tenant.slug).join(Tenant, Tenant.id == ParallelRun.tenant_id) \
        .order_by(Tenant.slug, ParallelRun.lookup)
    if tenant_id is not None:
        query = query.where(ParallelRun.tenant_id == uuid.UUID(tenant_id))
    return [_summary(run, slug) for run, slug in db_session.execute(query)]


def get_parallel_run(*, db_session: Session, run_id: str, tenant_id: str | None) -> dict:
    """One parallel run's report: counts, mismatch rate, the fields that differ most often
    (over the kept differences) and the most recent differences."""
    run = _find(db_session, run_id, tenant_id)
    view = _summary(run, db_session.get(Tenant, run.tenant_id).slug)
    top = db_session.execute(
        select(ParallelRunDifference.field, ParallelRunDifference.kind,
               func.count().label("count"))
        .where(ParallelRunDifference.parallel_run_id == run.id)
        .group_by(ParallelRunDifference.field, ParallelRunDifference.kind)
        .order_by(func.count().desc(), ParallelRunDifference.field).limit(TOP_FIELDS))
    view["top_fields"] = [{"field": field, "kind": kind, "count": count}
                          for field, kind, count in top]
    recent = db_session.scalars(
        select(ParallelRunDifference).where(ParallelRunDifference.parallel_run_id == run.id)
        .order_by(ParallelRunDifference.compared_at.desc(), ParallelRunDifference.path)
        .limit(RECENT_DIFFERENCES))
    view["recent_differences"] = [
        {"comparison_id": str(row.comparison_id), "compared_at": _iso(row.compared_at),
         "path": row.path, "field": row.field, "kind": row.kind, "hub_value": row.hub_value,
         "legacy_value": row.legacy_value} for row in recent]
    return view


def comparison_totals(*, db_session: Session) -> dict[tuple[str, str], int]:
    """Comparisons of every tenant by (lookup, outcome), for ``/metrics``."""
    totals: dict[tuple[str, str], int] = {}
    rows = db_session.execute(
        select(ParallelRun.lookup, func.sum(ParallelRun.matches), func.sum(ParallelRun.mismatches),
               func.sum(ParallelRun.legacy_errors)).group_by(ParallelRun.lookup))
    for lookup, matches, mismatches, errors in rows:
        for outcome, count in zip(OUTCOMES, (matches, mismatches, errors), strict=True):
            totals[(lookup, outcome)] = int(count or 0)
    return totals


# --- on the request path -------------------------------------------------------------------

def shadow_lookup(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
                  tenant_id: str, lookup: str, params: dict, consumer: str,
                  answer: dict) -> str | None:
    """Hand ``answer`` (the minimized answer the caller gets) to a comparison with the legacy
    endpoint if the tenant runs ``lookup`` in parallel and this lookup is sampled; return the
    comparison id, or None. Never raises: the caller's answer must not depend on it.

    The hub's answer goes to the worker through Redis, under an opaque id, for
    ``HUB_PARALLEL_RUN_STASH_SECONDS``: not in the task's arguments, which Flower and the broker
    show (it may hold pseudonyms and clinical values), and not re-read from the cache, whose
    entry can expire, be refreshed with a newer answer, or be a HIT older than the legacy
    answer it would be compared with. The stash holds what the cache holds: a minimized answer,
    checked like a cache entry.
    """
    try:
        run = db_session.scalar(select(ParallelRun).where(
            ParallelRun.tenant_id == uuid.UUID(tenant_id), ParallelRun.lookup == lookup,
            ParallelRun.enabled.is_(True)))
        if run is None or random.random() >= run.sample_rate:  # noqa: S311 (sampling, not secrets)
            return None
        assert_no_phi_fields(answer)
        comparison_id = uuid.uuid4().hex
        stash = {"run_id": str(run.id), "lookup": lookup, "params": params,
                 "consumer": consumer, "hub": answer}
        redis_client.set(STASH_PREFIX + comparison_id, json.dumps(stash),
                         ex=settings.hub_parallel_run_stash_seconds)
        dispatch.compare_parallel_run(comparison_id=comparison_id)
        return comparison_id
    except Exception:  # noqa: BLE001 - the live answer is already made; shadowing is best effort
        logger.warning("parallel run of %s not started", lookup, exc_info=True)
        return None


# --- in the worker -------------------------------------------------------------------------

def _legacy_target(db_session: Session, run: ParallelRun, shadowed: ShadowedLookup,
                   settings: Settings, tenant_slug: str) -> ConnectionTarget:
    policy = call_policy(settings)
    # The old link talks to the same system, which spells units the same way: the live
    # connection's code maps apply to it too.
    live = get_active_connection(db_session=db_session, tenant_id=run.tenant_id,
                                 product=shadowed.product)
    return ConnectionTarget(
        tenant=tenant_slug, product=f"legacy-{run.lookup}",
        connector=connector_named(shadowed.legacy_connector), base_url=run.legacy_base_url,
        credential=resolve_credential(run.legacy_credential_ref, settings.hub_secrets_dir),
        timezone=run.legacy_timezone,
        options={"unit_codes": (live.options or {}).get("unit_codes") or {}} if live else {},
        # A breaker of its own: a dead legacy link opens it without touching the live link's.
        breaker=breaker_for(f"legacy:{tenant_slug}:{run.lookup}", redis_url=settings.redis_url,
                            policy=policy),
        policy=policy)


def _legacy_failure(error: Exception) -> str:
    if isinstance(error, DownstreamNotFound):
        return "not_found"
    if isinstance(error, DownstreamRejected):
        return "rejected"
    if isinstance(error, DownstreamUnavailable):
        return "unavailable"
    if isinstance(error, CredentialUnavailable):
        return "no_credential"
    return "unusable"


def _take_stash(redis_client: redis.Redis, comparison_id: str) -> dict | None:
    key = STASH_PREFIX + comparison_id
    with redis_client.pipeline() as pipeline:
        # Taken once: a redelivered task finds nothing and counts nothing twice.
        stored, _deleted = pipeline.get(key).delete(key).execute()
    return json.loads(stored) if stored else None


def _record(db_session: Session, run: ParallelRun, outcome: str, comparison_id: str,
            found: list[Difference], disclosed: frozenset[str], legacy_error: str | None,
            keep: int) -> None:
    now = utcnow()
    counter = {"match": ParallelRun.matches, "mismatch": ParallelRun.mismatches,
               "legacy_error": ParallelRun.legacy_errors}[outcome]
    changes = {counter.key: counter + 1, "comparisons": ParallelRun.comparisons + 1,
               "last_compared_at": now}
    if legacy_error:
        changes["last_legacy_error"] = legacy_error
    # One UPDATE with increments: several workers compare for the same run at once.
    db_session.execute(update(ParallelRun).where(ParallelRun.id == run.id).values(**changes))
    for difference in found[:DIFFERENCES_PER_COMPARISON]:
        db_session.add(ParallelRunDifference(
            parallel_run_id=run.id, comparison_id=uuid.UUID(comparison_id), compared_at=now,
            path=difference.path[:200], field=difference.field[:200], kind=difference.kind,
            hub_value=shown_value(difference.hub_value, difference.field, disclosed),
            legacy_value=shown_value(difference.legacy_value, difference.field, disclosed)))
    if found:
        kept = select(ParallelRunDifference.id).where(
            ParallelRunDifference.parallel_run_id == run.id).order_by(
            ParallelRunDifference.compared_at.desc()).offset(keep).scalar_subquery()
        db_session.flush()
        db_session.execute(delete(ParallelRunDifference).where(
            ParallelRunDifference.id.in_(kept)))
    db_session.commit()


def compare(*, db_session: Session, redis_client: redis.Redis, settings: Settings,
            comparison_id: str) -> str:
    """Ask the legacy endpoint what the hub answered, compare both canonical answers field by
    field and record the outcome (match, mismatch or legacy_error); returns the outcome, or
    ``expired``/``stopped`` when there is nothing to compare any more."""
    stash = _take_stash(redis_client, comparison_id)
    if stash is None:
        return "expired"
    run = db_session.get(ParallelRun, uuid.UUID(stash["run_id"]))
    shadowed = SHADOWED_LOOKUPS.get(stash["lookup"])
    if run is None or not run.enabled or shadowed is None:
        return "stopped"
    tenant = db_session.get(Tenant, run.tenant_id)
    consumer = stash["consumer"]
    found: list[Difference] = []
    legacy_error = None
    try:
        target = _legacy_target(db_session, run, shadowed, settings, tenant.slug)
        canonical = shadowed.legacy_answer(target, stash["params"])
        pseudonymizer = Pseudonymizer(tenant_pseudonym_key(settings.hub_pseudonym_key,
                                                           str(run.tenant_id)))
        legacy = shadowed.minimized(canonical, consumer, pseudonymizer)
        found = differences(stash["hub"], legacy)
        outcome = "mismatch" if found else "match"
    except (DownstreamNotFound, DownstreamRejected, DownstreamUnavailable, CredentialUnavailable,
            RecordShapeError, *MAPPING_ERRORS) as error:
        outcome, legacy_error = "legacy_error", _legacy_failure(error)
    _record(db_session, run, outcome, comparison_id, found,
            disclosed_fields(shadowed.policy_resource, consumer, shadowed.field_prefix),
            legacy_error,
            settings.hub_parallel_run_differences_kept)
    logger.info("parallel run compared", extra={"lookup": run.lookup, "outcome": outcome,
                                                "differences": len(found),
                                                "legacy_error": legacy_error})
    return outcome
