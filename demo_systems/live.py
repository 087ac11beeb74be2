"""The running world: new administrations and movements while the demo systems serve.

Off unless ``DEMO_LIVE_RECORDS_PER_MINUTE`` is a positive number (the local stack sets it, so
``make run`` shows change feeds and events flowing; tests leave it off and add records through
``POST /_admin/live/records`` instead). Each system adds that many records per minute to each
site it serves, through its change feed; what they contain is deterministic for the seed and
the feed position, only their times come from the clock.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from demo_systems.sites import sites_running

ENVIRONMENT_VARIABLE = "DEMO_LIVE_RECORDS_PER_MINUTE"
MAX_RECORDS_PER_CALL = 200_000

logger = logging.getLogger(__name__)


def record(desk, site, count: int) -> dict:
    """Add ``count`` new records at ``site`` now; return their ids and feed positions."""
    return desk.system.record_new(desk.store, site, count, int(time.time()), desk.seed)


def _run(desk, per_minute: float) -> None:
    # One record per site per tick, ticks spread evenly over the minute.
    pause = 60.0 / per_minute
    while True:
        time.sleep(pause)
        for site in sites_running(desk.system.name):
            try:
                record(desk, site, 1)
            except Exception:  # noqa: BLE001 - a busy database must not end the running world
                logger.exception("could not add a live record for %s", site.slug)


def start_from_environment(desk) -> threading.Thread | None:
    """Start the running world in a daemon thread when the environment asks for it."""
    try:
        per_minute = float(os.environ.get(ENVIRONMENT_VARIABLE) or 0)
    except ValueError:
        raise SystemExit(f"{ENVIRONMENT_VARIABLE} must be a number of records per minute") from None
    if per_minute <= 0:
        return None
    thread = threading.Thread(target=_run, args=(desk, per_minute), daemon=True,
                              name=f"live-{desk.system.name}")
    thread.start()
    return thread
