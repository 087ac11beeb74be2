"""What every non-admin request meets first, in both demo systems, in this order:

1. it is counted (rejected and faulted requests too, so tests can prove a call never happened);
2. the fault plan for its site is applied (down → 503, latency, hang, error → 500);
3. the site named in its path must exist and run this system (else 404);
4. the API key must be that site's key for this system (else 401).

Only then does a view run, with the resolved site in ``flask.g.site``.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Request, Response, current_app, g, jsonify, request

from demo_systems.faults import FaultBoard
from demo_systems.request_counter import RequestCounter
from demo_systems.sites import Site

ADMIN_PREFIX = "/_admin"


@dataclass(frozen=True)
class DemoSystem:
    """What differs between the two demo systems; everything else is shared."""

    name: str
    api: Blueprint
    database_file: str
    site_variable: str
    """The URL variable naming the site: ``site`` (a slug) or ``facility`` (a code)."""
    site_named: Callable[[str], Site | None]
    presented_key: Callable[[Request], str | None]
    """The API key a request carries, read the way this system expects it."""
    open_store: Callable[[Path], Any]
    export_phi: Callable[[Any], dict]
    """The seeded patient identifiers and notes this system serves, for leak scanning."""
    record_new: Callable[[Any, Site, int, int, int], dict]
    """Add (store, site, count, now epoch, seed) new records as the running world makes them,
    through the system's change feed; returns their ids and feed positions."""
    older_apis: tuple[Blueprint, ...] = ()
    """Older versions of the API still served beside the current one (behind the same desk)."""


@dataclass
class FrontDesk:
    """One running demo system: its store, keys, faults and request counts."""

    system: DemoSystem
    store: Any
    data_dir: Path
    keys: dict[str, str]
    admin_token: str
    seed: int = 0
    faults: FaultBoard = field(default_factory=FaultBoard)
    counter: RequestCounter = field(default_factory=RequestCounter)

    def take_site(self, values: dict | None) -> None:
        """Move the site named in the URL out of the view arguments into ``g``."""
        g.site_named = values.pop(self.system.site_variable, None) if values else None

    def receive(self) -> Response | None:
        """Count, fault, route and authenticate the current request; a response ends it early."""
        if request.path == ADMIN_PREFIX or request.path.startswith(ADMIN_PREFIX + "/"):
            return None
        named = getattr(g, "site_named", None)
        site = self.system.site_named(named) if named else None
        if site is not None and not site.has(self.system.name):
            site = None
        rule = request.url_rule.rule if request.url_rule else "(unmatched)"
        self.counter.record(site=site.slug if site else named, endpoint=f"{request.method} {rule}",
                            request_id=request.headers.get("X-Request-ID"))
        refusal = self.faults.enact(site.slug if site else None)
        if refusal:
            status, message = refusal
            return error_response(status, "injected_fault", message)
        if request.url_rule is None:
            return None  # Flask answers the 404 or 405 itself.
        if site is None:
            return error_response(404, "not_found", f"no such {self.system.site_variable}")
        presented = self.system.presented_key(request) or ""
        if not hmac.compare_digest(presented.encode(), self.keys[site.slug].encode()):
            return error_response(401, "unauthorized", "missing or wrong API key for this site")
        g.site = site
        return None


def front_desk(app: Flask | None = None) -> FrontDesk:
    """The front desk of the running demo system."""
    return (app or current_app).extensions["demo_front_desk"]


def error_response(status: int, error: str, message: str, **extra: Any) -> Response:
    """A JSON error body, the shape both demo systems answer errors with."""
    response = jsonify(error=error, message=message, **extra)
    response.status_code = status
    return response
