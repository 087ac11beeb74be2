"""Timestamps: native local times (with an offset, or naive in the site's timezone) to UTC.

Every instant the hub takes lies between ``EARLIEST`` and ``LATEST``: at the calendar's edges
(``0001-01-01T00:00:00+14:00``) the UTC instant is not a ``datetime`` at all, and no hospital
record or query window is meant there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)
_OUT_OF_RANGE = f"a timestamp lies between {EARLIEST.year} and {LATEST.year} (UTC)"


class InvalidTimestamp(ValueError):
    """The value is not an ISO 8601 timestamp the hub can place in time."""


def to_utc(value: str | datetime, site_timezone: str = "UTC") -> datetime:
    """Return ``value`` as an aware UTC datetime.

    A value with an offset (``2026-11-18T08:15:00-05:00``, ``...Z``) is exact. A naive value is
    read in ``site_timezone``; during the autumn DST overlap the earlier instant is taken
    (``fold=0``), as hospital systems that drop offsets usually mean.
    """
    if isinstance(value, datetime):
        moment = value
    else:
        if not isinstance(value, str):
            raise InvalidTimestamp("a timestamp is an ISO 8601 string")
        try:
            moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            raise InvalidTimestamp("a timestamp is an ISO 8601 string") from None
    if moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=ZoneInfo(site_timezone), fold=0)
        except ZoneInfoNotFoundError:
            raise InvalidTimestamp("unknown site timezone") from None
    try:
        moment = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidTimestamp(_OUT_OF_RANGE) from None
    if not EARLIEST <= moment <= LATEST:
        raise InvalidTimestamp(_OUT_OF_RANGE)
    return moment



def format_utc(moment: datetime) -> str:
    """Return ``moment`` as ISO 8601 in UTC with a ``Z`` suffix, to the second."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")
