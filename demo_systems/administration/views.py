"""The eMAR's native REST API, ``/emar/v1/facilities/{facility}/...``, with cursor pagination."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from demo_systems import params
from demo_systems.administration import cursor
from demo_systems.administration.store import AdministrationFilter
from demo_systems.front_desk import front_desk

api = Blueprint("administration_api", __name__, url_prefix="/emar/v1/facilities/<facility>")

DEFAULT_PAGE_SIZE = 200
MAX_PAGE_SIZE = 1000


@api.get("/wards")
def wards():
    """The facility's wards."""
    params.refuse_unknown(request.args, ())
    return jsonify(data=front_desk().store.wards(g.site.facility))


@api.get("/administrations")
def administrations():
    """A page of the facility's administrations in id order, by ward, NDC-11 and time window.

    ``since`` is inclusive and ``until`` exclusive; both need a UTC offset. Follow
    ``next_cursor`` until it is null to read every matching record exactly once.
    """
    params.refuse_unknown(request.args, ("ward", "ndc11", "since", "until", "cursor", "page_size"))
    page_size = params.integer(request.args, "page_size", default=DEFAULT_PAGE_SIZE, minimum=1,
                               maximum=MAX_PAGE_SIZE)
    after_id = 0
    if request.args.get("cursor"):
        try:
            after_id = cursor.decode(request.args["cursor"])
        except cursor.BadCursor as bad:
            raise params.QueryError("cursor", str(bad)) from None
    where = AdministrationFilter(
        ward=params.text(request.args, "ward"),
        ndc11=params.text(request.args, "ndc11"),
        since=params.timestamp(request.args, "since"),
        until=params.timestamp(request.args, "until"),
    )
    page, continue_after = front_desk().store.administrations(
        g.site.facility, where, after_id=after_id, page_size=page_size)
    return jsonify(data=page, next_cursor=cursor.encode(continue_after) if continue_after else None)


@api.get("/administrations/changes")
def administration_changes():
    """The facility's change feed: administrations in the order they were charted.

    Each record carries its feed position ``sequence`` (only grows, never reused) and its
    charting time ``recorded_at``, which may be hours after ``given_at``. Read after
    ``after_sequence`` (exclusive; default 0), optionally only what was charted at or after
    ``recorded_since``; continue with the last record's ``sequence``. ``head_sequence`` is the
    feed's latest position (``page_size=0`` asks for it alone).
    """
    params.refuse_unknown(request.args, ("after_sequence", "recorded_since", "page_size"))
    page_size = params.integer(request.args, "page_size", default=DEFAULT_PAGE_SIZE, minimum=0,
                               maximum=MAX_PAGE_SIZE)
    after_sequence = params.integer(request.args, "after_sequence", default=0, minimum=0)
    page, head = front_desk().store.changes(
        g.site.facility, after_sequence=after_sequence,
        recorded_since=params.timestamp(request.args, "recorded_since"), page_size=page_size)
    return jsonify(data=page, head_sequence=head)
