"""The inventory's native REST API, ``/api/v2/sites/{site}/...``, with offset pagination."""
from __future__ import annotations

from flask import Blueprint, abort, g, jsonify, request

from demo_systems import params
from demo_systems.front_desk import front_desk
from demo_systems.inventory.store import MOVEMENT_TYPES, ContainerFilter, MovementFilter
from demo_systems.world import CONTAINER_STATUSES

api = Blueprint("inventory_api", __name__, url_prefix="/api/v2/sites/<site>")

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


def _page_window() -> tuple[int, int]:
    offset = params.integer(request.args, "offset", default=0, minimum=0)
    limit = params.integer(request.args, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    return offset, limit


@api.get("/locations")
def locations():
    """The site's facility → units → cabinets catalogue."""
    params.refuse_unknown(request.args, ())
    return jsonify(front_desk().store.locations(g.site.slug))


@api.get("/containers")
def containers():
    """A page of the site's containers, filtered by unit, NDC, status or barcode."""
    params.refuse_unknown(request.args, ("unit", "ndc", "status", "barcode", "offset", "limit"))
    offset, limit = _page_window()
    where = ContainerFilter(
        unit=params.text(request.args, "unit"),
        ndc=params.text(request.args, "ndc"),
        status=params.text(request.args, "status", choices=CONTAINER_STATUSES),
        barcode=params.text(request.args, "barcode"),
    )
    total, items = front_desk().store.containers(g.site.slug, where, offset=offset, limit=limit)
    return jsonify(total=total, offset=offset, limit=limit, items=items)


@api.get("/containers/<container_id>")
def container(container_id: str):
    """One container."""
    params.refuse_unknown(request.args, ())
    found = front_desk().store.container(g.site.slug, container_id)
    if found is None:
        abort(404, description="no such container")
    return jsonify(found)


@api.get("/containers/<container_id>/movements")
def container_movements(container_id: str):
    """A container's movement history, oldest first."""
    params.refuse_unknown(request.args, ())
    history = front_desk().store.container_movements(g.site.slug, container_id)
    if history is None:
        abort(404, description="no such container")
    return jsonify(items=history)


@api.get("/movements")
def movements():
    """A page of the site's movements in time order, by destination unit, type and time window.

    ``since`` is inclusive and ``until`` exclusive; both need a UTC offset.
    """
    params.refuse_unknown(request.args, ("toUnit", "type", "since", "until", "offset", "limit"))
    offset, limit = _page_window()
    where = MovementFilter(
        to_unit=params.text(request.args, "toUnit"),
        type=params.text(request.args, "type", choices=MOVEMENT_TYPES),
        since=params.timestamp(request.args, "since"),
        until=params.timestamp(request.args, "until"),
    )
    total, items = front_desk().store.movements(g.site.slug, where, offset=offset, limit=limit)
    return jsonify(total=total, offset=offset, limit=limit, items=items)


@api.get("/movements/changes")
def movement_changes():
    """The site's change feed: movements in the order they were scanned.

    Each movement carries its feed position ``sequence`` (only grows, never reused) and when
    it was scanned, ``recordedAt``. Read after ``afterSequence`` (exclusive; default 0),
    optionally only what was scanned at or after ``recordedSince``; continue with the last
    item's ``sequence``. ``headSequence`` is the feed's latest position (``limit=0`` asks for it
    alone).
    """
    params.refuse_unknown(request.args, ("afterSequence", "recordedSince", "limit"))
    limit = params.integer(request.args, "limit", default=DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT)
    after_sequence = params.integer(request.args, "afterSequence", default=0, minimum=0)
    head, items = front_desk().store.changes(
        g.site.slug, after_sequence=after_sequence,
        recorded_since=params.timestamp(request.args, "recordedSince"), limit=limit)
    return jsonify(headSequence=head, limit=limit, items=items)
