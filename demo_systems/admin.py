"""The ``/_admin`` API both demo systems share: faults, request counts, exports, health.

Guarded by the ``X-Admin-Token`` header (``DEMO_ADMIN_TOKEN``, default ``demo-admin``), except
``/_admin/health``, which process supervisors probe without secrets and which reveals nothing.
"""
from __future__ import annotations

import hmac

from flask import Blueprint, jsonify, request

from demo_systems import ground_truth, live
from demo_systems.faults import FaultPlanError, parse_fault_request
from demo_systems.front_desk import error_response, front_desk
from demo_systems.sites import site_by_slug_or_facility

admin = Blueprint("demo_admin", __name__, url_prefix="/_admin")


@admin.before_request
def require_admin_token():
    """Refuse admin calls without the right ``X-Admin-Token``."""
    if request.endpoint == "demo_admin.health":
        return None
    presented = request.headers.get("X-Admin-Token", "")
    if not hmac.compare_digest(presented.encode(), front_desk().admin_token.encode()):
        return error_response(401, "unauthorized", "missing or wrong X-Admin-Token")
    return None


@admin.get("/health")
def health():
    """Answer 200 while the server is up (faults do not apply here)."""
    return jsonify(status="ok", system=front_desk().system.name)


@admin.get("/faults")
def faults():
    """Show the faults in force."""
    return jsonify(front_desk().faults.snapshot())


@admin.put("/faults")
def switch_on_faults():
    """Replace the fault plan for all sites, or for the ``site`` named in the body."""
    try:
        plan, site = parse_fault_request(request.get_json(silent=True))
    except FaultPlanError as invalid:
        return error_response(400, "bad_request", "invalid fault plan", fields=invalid.errors)
    front_desk().faults.switch_on(plan, site)
    return jsonify(front_desk().faults.snapshot())


@admin.delete("/faults")
def clear_faults():
    """Lift every fault, or only those of ``?site=``."""
    site = request.args.get("site")
    if site is not None:
        known = site_by_slug_or_facility(site)
        if known is None:
            return error_response(400, "bad_request", "unknown site", fields={"site": "unknown site"})
        site = known.slug
    front_desk().faults.clear(site)
    return jsonify(front_desk().faults.snapshot())


@admin.get("/requests")
def request_counts():
    """Show how many non-admin requests arrived, in all, by site and by endpoint."""
    return jsonify(front_desk().counter.snapshot())


@admin.post("/requests/reset")
def reset_request_counts():
    """Start counting requests from zero."""
    front_desk().counter.reset()
    return jsonify(front_desk().counter.snapshot())


@admin.get("/export/phi")
def export_phi():
    """Every seeded patient identifier and note this system serves, for leak scanning."""
    desk = front_desk()
    return jsonify(system=desk.system.name, **desk.system.export_phi(desk.store))


@admin.get("/export/ground-truth")
def export_ground_truth():
    """This system's part of the seed-time ground truth, optionally for one ``?site=``."""
    desk = front_desk()
    part = ground_truth.load_part(desk.data_dir / ground_truth.FILE_NAME, desk.system.name)
    site = request.args.get("site")
    if site is not None:
        if site_by_slug_or_facility(site) is None:
            return error_response(400, "bad_request", "unknown site", fields={"site": "unknown site"})
        part = ground_truth.filter_by_site(part, site)
    return jsonify(system=desk.system.name, **part)



@admin.post("/live/records")
def add_live_records():
    """Add ``count`` new records at ``site`` now, through the change feed, as the running
    world would: ``{"site", "count"}`` → ``{"ids", "first_sequence", "head_sequence"}``."""
    desk = front_desk()
    body = request.get_json(silent=True) or {}
    site = site_by_slug_or_facility(body.get("site")) if isinstance(body.get("site"), str) else None
    count = body.get("count", 1)
    errors = {}
    if site is None or not site.has(desk.system.name):
        errors["site"] = "unknown site"
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= live.MAX_RECORDS_PER_CALL:
        errors["count"] = f"must be an integer between 1 and {live.MAX_RECORDS_PER_CALL}"
    if errors:
        return error_response(400, "bad_request", "invalid live records request", fields=errors)
    return jsonify(site=site.slug, **live.record(desk, site, count))
