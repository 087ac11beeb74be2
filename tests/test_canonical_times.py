"""Timestamps: local times with offsets, naive site-local times and UTC all land in UTC."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.canonical.times import InvalidTimestamp, format_utc, to_utc


def test_offset_times_are_exact():
    assert format_utc(to_utc("2026-11-18T08:15:00-05:00")) == "2026-11-18T13:15:00Z"
    assert format_utc(to_utc("2026-11-18T13:15:00Z")) == "2026-11-18T13:15:00Z"


def test_naive_times_are_read_in_the_site_timezone():
    assert format_utc(to_utc("2026-07-01T08:00:00", "America/Chicago")) == "2026-07-01T13:00:00Z"
    assert format_utc(to_utc("2026-12-01T08:00:00", "America/Chicago")) == "2026-12-01T14:00:00Z"


def test_the_repeated_autumn_hour_takes_the_earlier_instant():
    assert format_utc(to_utc("2026-11-01T01:30:00", "America/New_York")) == "2026-11-01T05:30:00Z"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC)))
def test_utc_round_trips_to_the_second(moment):
    moment = moment.replace(microsecond=0)

    assert to_utc(format_utc(moment)) == moment


@pytest.mark.parametrize("bad, zone", [("yesterday", "UTC"), ("2026-13-01T00:00:00Z", "UTC"),
                                       ("2026-11-01T00:00:00", "Mars/Olympus")])
def test_unreadable_timestamps_are_refused(bad, zone):
    with pytest.raises(InvalidTimestamp):
        to_utc(bad, zone)


@pytest.mark.parametrize("edge", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                  "1899-12-31T23:59:59Z", "3000-01-01T00:00:00Z"])
def test_instants_at_the_calendars_edges_are_refused(edge):
    with pytest.raises(InvalidTimestamp, match="between"):
        to_utc(edge)
