"""Fault injection switched on at runtime: latency, errors, hangs and outages, per site or for all.

State lives in the server process, guarded by one lock. That is only correct because the demo
systems are served by gunicorn with exactly ONE worker process (``-w 1 -k gthread``) and many
threads: every request sees the same switchboard. Several worker processes would each hold their
own copy and a PUT would reach only one of them.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from demo_systems.sites import site_by_slug_or_facility

MAX_LATENCY_MS = 60_000
MAX_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class FaultPlan:
    """How requests to one scope misbehave.

    ``latency_ms`` delays every request; ``timeout_rate`` of requests then hang for
    ``timeout_seconds`` before answering normally (longer than any sane client timeout);
    ``error_rate`` of requests answer 500; ``down`` answers 503 to everything.
    """

    latency_ms: int = 0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    down: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The plan as the admin API shows it."""
        return asdict(self)


class FaultPlanError(ValueError):
    """A fault request that does not validate; ``errors`` maps field → message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def parse_fault_request(payload: Any) -> tuple[FaultPlan, str | None]:
    """Validate a ``PUT /_admin/faults`` body into a plan and its site scope (None: all sites).

    Fields left out take their harmless defaults, so a PUT replaces the scope's whole plan.
    """
    if not isinstance(payload, dict):
        raise FaultPlanError({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    known = set(FaultPlan.__dataclass_fields__) | {"site"}
    for field in sorted(set(payload) - known):
        errors[field] = "unknown field"
    values: dict[str, Any] = {}

    def number(field: str, low: float, high: float, *, integer: bool = False) -> None:
        if field not in payload:
            return
        value = payload[field]
        # bool is an int in Python; true/false here is a caller's mistake.
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (integer and not isinstance(value, int))):
            errors[field] = "must be an integer" if integer else "must be a number"
        elif not low <= value <= high:
            errors[field] = f"must be between {low:g} and {high:g}"
        else:
            values[field] = value

    number("latency_ms", 0, MAX_LATENCY_MS, integer=True)
    number("error_rate", 0, 1)
    number("timeout_rate", 0, 1)
    number("timeout_seconds", 0, MAX_TIMEOUT_SECONDS)
    if "down" in payload:
        if isinstance(payload["down"], bool):
            values["down"] = payload["down"]
        else:
            errors["down"] = "must be true or false"
    site = None
    if payload.get("site") is not None:
        known_site = site_by_slug_or_facility(payload["site"]) if isinstance(payload["site"], str) else None
        if known_site is None:
            errors["site"] = "unknown site"
        else:
            site = known_site.slug
    if errors:
        raise FaultPlanError(errors)
    return FaultPlan(**values), site


class FaultBoard:
    """The faults in force, for all sites and per site; shared by every serving thread.

    A site's own plan, when set, replaces the all-sites plan for that site.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._all_sites = FaultPlan()
        self._per_site: dict[str, FaultPlan] = {}
        self._generation = 0
        self._dice = random.Random()

    def switch_on(self, plan: FaultPlan, site: str | None = None) -> None:
        """Put ``plan`` in force for one site, or for all sites when ``site`` is None."""
        with self._changed:
            if site is None:
                self._all_sites = plan
            else:
                self._per_site[site] = plan
            self._bump()

    def clear(self, site: str | None = None) -> None:
        """Lift one site's plan, or every plan when ``site`` is None."""
        with self._changed:
            if site is None:
                self._all_sites = FaultPlan()
                self._per_site.clear()
            else:
                self._per_site.pop(site, None)
            self._bump()

    def plan_for(self, site: str | None) -> FaultPlan:
        """The plan a request to ``site`` (None: no known site) is subject to."""
        with self._changed:
            return self._per_site.get(site, self._all_sites) if site else self._all_sites

    def snapshot(self) -> dict[str, Any]:
        """Every plan in force, as the admin API shows it."""
        with self._changed:
            return {"all_sites": self._all_sites.as_dict(),
                    "sites": {site: plan.as_dict() for site, plan in sorted(self._per_site.items())}}

    def enact(self, site: str | None) -> tuple[int, str] | None:
        """Apply the plan for ``site`` to the current request, sleeping where it says so.

        Returns the status and message to answer with instead of serving, or None to serve.
        """
        plan = self.plan_for(site)
        if plan.down:
            return 503, "the system is down (injected fault)"
        if plan.latency_ms:
            self._hold(plan.latency_ms / 1000)
        if plan.timeout_rate and self._dice.random() < plan.timeout_rate:
            self._hold(plan.timeout_seconds)
        if plan.error_rate and self._dice.random() < plan.error_rate:
            return 500, "internal error (injected fault)"
        return None

    def _bump(self) -> None:
        self._generation += 1
        self._changed.notify_all()

    def _hold(self, seconds: float) -> None:
        # Sleep, but wake as soon as the faults change: a test that clears a 30 s hang must not
        # leave every serving thread asleep for the next test.
        deadline = time.monotonic() + seconds
        with self._changed:
            generation = self._generation
            while self._generation == generation:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)
