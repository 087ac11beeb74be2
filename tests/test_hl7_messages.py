"""Reading, checking and acknowledging HL7 v2 messages (app.hl7.messages), without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import hl7
import pytest

from app.connectors.pharmacy import STRUCTURES
from app.hl7.messages import (
    Refusal,
    acknowledgement,
    parse_timestamp,
    read_message,
    refusal_acknowledgement,
)
from tests.fixtures.hl7 import ack_segments, encoded, hl7_message


def refusal_of(raw: bytes) -> Refusal:
    with pytest.raises(Refusal) as refused:
        read_message(raw, structures=STRUCTURES)
    return refused.value


def test_a_valid_message_is_read_with_its_header():
    inbound = read_message(encoded(hl7_message("RDS^O13", control_id="C1")),
                           structures=STRUCTURES)

    header = inbound.header
    assert (header.sender_application, header.sender_facility, header.control_id) == (
        "PHARM", "NGH", "C1")
    assert (header.message_type, header.structure, header.version, header.processing_id) == (
        "RDS^O13", "RDS_O13", "2.5", "P")
    assert inbound.structure.structure_id == "RDS_O13"


@pytest.mark.parametrize("separator", ["\n", "\r\n"])
def test_lf_and_crlf_segment_ends_read_like_cr(separator):
    inbound = read_message(encoded(hl7_message(separator=separator)), structures=STRUCTURES)

    assert [str(segment[0]) for segment in inbound.message] == [
        "MSH", "PID", "PV1", "ORC", "RXE", "RXR"]


def test_version_2_5_1_is_accepted_and_others_are_refused_with_203():
    read_message(encoded(hl7_message(version="2.5.1")), structures=STRUCTURES)

    for version in ("2.4", "2.8", "2.50", "3.0"):
        refusal = refusal_of(encoded(hl7_message(version=version)))
        assert (refusal.ack_code, refusal.error_code, refusal.location) == ("AR", "203",
                                                                           "MSH^1^12")


@pytest.mark.parametrize(("message", "code", "location"), [
    (hl7_message("ADT^A01"), "200", "MSH^1^9"),
    (hl7_message("RDE^O01"), "201", "MSH^1^9"),
    (hl7_message("RDE^O11").replace("RDE^O11^RDE_O11", "RDE^O11^RDS_O13"), "200", "MSH^1^9"),
    (hl7_message("RDE^O11").replace("RDE^O11^RDE_O11", ""), "101", "MSH^1^9"),
    (hl7_message(control_id="x" * 65), "102", "MSH^1^10"),
    (hl7_message(sender=("", "NGH")), "101", "MSH^1^3"),
    (hl7_message(sender=("PHARM", "")), "101", "MSH^1^4"),
    (hl7_message().replace("|P|2.5", "|X|2.5"), "202", "MSH^1^11"),
    (hl7_message(drop=("RXR",)), "100", "RXR"),
    (hl7_message(drop=("PID",)), "100", "PID"),
    (hl7_message(encoding="^~\\#"), "102", "MSH^1^2"),
    (hl7_message(charset="ISO IR87"), "103", "MSH^1^18"),
    ("PID|1\rMSH|^~\\&|A|B|||1||RDE^O11|1|P|2.5\r", "100", "MSH^1"),
    ("", "100", "MSH^1"),
    (hl7_message() + "R!X|broken\r", "100", "^7"),
])
def test_each_broken_header_or_structure_gets_its_table_0357_code(message, code, location):
    refusal = refusal_of(encoded(message))

    assert (refusal.ack_code, refusal.error_code, refusal.location) == ("AR", code, location)


def test_a_segment_out_of_order_is_a_segment_sequence_error():
    text = hl7_message()
    rxe, rxr = "RXE|" + text.split("\rRXE|")[1].split("\r")[0], "RXR|IV^Intravenous"
    swapped = text.replace(f"{rxe}\r{rxr}", f"{rxr}\r{rxe}")

    assert refusal_of(encoded(swapped)).error_code == "100"


def test_bytes_invalid_in_the_declared_character_set_are_refused_with_102():
    refusal = refusal_of(encoded(hl7_message()).replace(b"Morphine", b"Morph\xc3ine"))

    assert (refusal.error_code, refusal.location, refusal.control_id) == ("102", "MSH^1^18",
                                                                          refusal.header.control_id)


def test_the_ack_msh_is_built_from_the_inbound_msh():
    inbound = read_message(encoded(hl7_message(control_id="C-77", sender=("RX", "SITE"))),
                           structures=STRUCTURES)

    before = datetime.now(UTC).replace(microsecond=0)
    ack = ack_segments(acknowledgement(ack_code="AA", source=inbound.message))

    msh = ack["MSH"]
    assert msh[1:7] == ["|", "^~\\&", "MEDHUB", "MEDHUB", "RX", "SITE"]
    sent = datetime.strptime(msh[7], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= sent <= before + timedelta(seconds=5)
    assert msh[9] == "ACK^O11^ACK"
    assert len(msh[10]) == 20 and msh[10] != "C-77"
    assert msh[11:13] == ["P", "2.5"]
    assert ack["MSA"] == ["MSA", "AA", "C-77"]
    assert list(ack) == ["MSH", "MSA"]


def test_a_refusal_ack_carries_err_with_code_text_and_reason():
    refusal = refusal_of(encoded(hl7_message("ORU^R01", control_id="C-9")))

    ack = ack_segments(refusal_acknowledgement(refusal))

    assert ack["MSA"][1:3] == ["AR", "C-9"]
    err = ack["ERR"]
    assert err[2] == "MSH^1^9"
    assert err[3] == "200^Unsupported message type^HL70357"
    assert err[4] == "E"
    assert err[8] == "The hub does not accept this message type."


def test_an_msh_too_broken_to_build_from_gets_the_hubs_own_header():
    refusal = refusal_of(b"\x00garbage")

    ack = ack_segments(refusal_acknowledgement(refusal))

    assert ack["MSH"][3:7] == ["MEDHUB", "MEDHUB", "", ""]
    assert ack["MSH"][9] == "ACK" and ack["MSH"][11:13] == ["P", "2.5"]
    assert ack["MSA"][1:3] == ["AR", ""]
    assert ack["ERR"][3].startswith("100^")


def test_an_msh9_without_components_still_gets_an_ack():
    message = hl7.parse("MSH|^~\\&|A|B|||20261118||ADT|C-1|P|2.5")

    ack = ack_segments(acknowledgement(ack_code="AR", source=message))

    assert ack["MSA"][1:3] == ["AR", "C-1"]


def test_the_refusal_text_never_echoes_message_content():
    message = hl7_message(control_id="C-1").replace("RXR|IV^Intravenous", "RXR|IV^Quillfeather")
    message = message.replace("RDE^O11^RDE_O11", "RDE^O11^XX_Quillfeather")

    ack = refusal_acknowledgement(refusal_of(encoded(message)))

    assert "Quillfeather" not in ack


@pytest.mark.parametrize(("value", "expected"), [
    ("202611180815", datetime(2026, 11, 18, 8, 15)),
    ("20261118081530", datetime(2026, 11, 18, 8, 15, 30)),
    ("20261118081530.25", datetime(2026, 11, 18, 8, 15, 30, 250000)),
])
def test_hl7_timestamps_without_offset_are_site_time(value, expected):
    assert parse_timestamp(value) == expected


def test_hl7_timestamps_with_offset_are_exact():
    moment = parse_timestamp("202611180815-0500")

    assert moment.astimezone(UTC) == datetime(2026, 11, 18, 13, 15, tzinfo=UTC)


@pytest.mark.parametrize("value", ["20261118", "2026111808", "202611180815Z", "soon", ""])
def test_timestamps_coarser_than_a_minute_or_malformed_are_refused(value):
    with pytest.raises(ValueError):
        parse_timestamp(value)
