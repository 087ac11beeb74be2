"""Timestamps: native local times (with an offset, or naive in the site's timezone) to UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


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
    return moment.astimezone(UTC)


def format_utc(moment: datetime) -> str:
    """Return ``moment`` as ISO 8601 in UTC with a ``Z`` suffix, to the second."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")
