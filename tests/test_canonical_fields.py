"""Request-parameter fields: bounded ASCII grammars, canonical values, errors that never repeat
the value."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError

from app.canonical.fields import IdField, UtcDateTimeField, UtcTimestampField


class Parameters(Schema):
    at = UtcDateTimeField()
    container_id = IdField()


class Stored(Schema):
    created_at = UtcTimestampField()


@pytest.mark.parametrize("edge", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_timestamps_at_the_calendars_edges_are_a_field_error(edge):
    with pytest.raises(ValidationError) as refused:
        Parameters().load({"at": edge})

    assert refused.value.messages == {"at": ["a timestamp lies between 1900 and 2999 (UTC)"]}


@pytest.mark.parametrize("text, message", [
    ("2026-11-18T00:00:00", "a timestamp needs a UTC offset (…Z or …+01:00)"),
    ("2026-11-18", "not an RFC 3339 timestamp (2026-11-18T08:15:00Z)"),
    ("２０２６-11-18T00:00:00Z", "not an RFC 3339 timestamp"),
    ("2026-02-30T00:00:00Z", "not a date and time of the calendar"),
    ("2026-11-18T00:00:00Z" + " " * 40, "not an RFC 3339 timestamp"),
])
def test_timestamps_outside_rfc_3339_are_refused_by_rule(text, message):
    with pytest.raises(ValidationError) as refused:
        Parameters().load({"at": text})

    assert refused.value.messages == {"at": [message]}


def test_an_offset_time_becomes_utc():
    loaded = Parameters().load({"at": "2026-11-18T08:15:00-05:00"})

    assert loaded["at"] == datetime(2026, 11, 18, 13, 15, tzinfo=UTC)


@pytest.mark.parametrize("container_id", ["NGH-C00001234", "a", "A1.b_c-d", "x" * 64])
def test_ids_of_the_id_grammar_are_taken(container_id):
    assert Parameters().load({"container_id": container_id}) == {"container_id": container_id}


@pytest.mark.parametrize("container_id", ["NGH-C00001234#x", "NGH-C00001234?unit=ICU-3", "..",
                                          ".hidden", "a/b", "a%2Fb", "", "x" * 65, "NGH-Ｃ1",
                                          "Jane Canary"])
def test_ids_outside_the_id_grammar_are_refused_without_repeating_them(container_id):
    with pytest.raises(ValidationError) as refused:
        Parameters().load({"container_id": container_id})

    [message] = refused.value.messages["container_id"]
    assert container_id not in message or container_id == ""


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)))
def test_stored_times_are_sent_with_a_utc_offset_even_when_the_database_drops_it(naive):
    shown = Stored().dump({"created_at": naive})["created_at"]

    assert shown.endswith("Z")
    assert datetime.fromisoformat(shown) == naive.replace(microsecond=0, tzinfo=UTC)


@given(st.one_of(st.text(max_size=60), st.datetimes(timezones=st.timezones()).map(
    lambda moment: moment.isoformat())))
def test_any_timestamp_text_is_a_field_error_or_an_instant_in_range(text):
    try:
        loaded = Parameters().load({"at": text})["at"]
    except ValidationError as refused:
        assert set(refused.messages) == {"at"}
        return
    assert loaded.utcoffset().total_seconds() == 0
    assert 1900 <= loaded.year <= 2999
