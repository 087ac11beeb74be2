"""The MLLP listener as its own process, over real TCP: framing, limits, ACKs, storage, PHI."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.pharmacy.models import Hl7Message, PharmacyDispense, PharmacyOrder
from tests.fixtures.hl7 import (
    SEEDED_PHI,
    ack_segments,
    closed_by_peer,
    encoded,
    framed,
    hl7_message,
    read_frame,
    read_frames,
)
from tests.fixtures.outages import database_outage
from tests.fixtures.processes import wait_until


def exchange(listener, *payloads: bytes) -> list[dict]:
    with listener.connect() as connection:
        connection.sendall(b"".join(framed(payload) for payload in payloads))
        return [ack_segments(frame) for frame in read_frames(connection, len(payloads))]


def stored(hub_app, model, tenant_id) -> list:
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        try:
            return list(session.scalars(select(model).where(model.tenant_id == tenant_id)))
        finally:
            session.close()  # detaches the rows with what they read (a rollback would expire it)


def test_an_order_is_acknowledged_aa_field_by_field_and_stored(mllp_listener, hub_app,
                                                                 pharmacy_tenant):
    application, facility = pharmacy_tenant.sender
    [ack] = exchange(mllp_listener, encoded(hl7_message(sender=pharmacy_tenant.sender,
                                                        control_id="TCP-1")))

    msh = ack["MSH"]
    assert msh[1:3] == ["|", "^~\\&"]
    assert (msh[3], msh[4], msh[5], msh[6]) == ("MEDHUB", "MEDHUB", application, facility)
    assert msh[9] == "ACK^O11^ACK" and msh[10] and msh[10] != "TCP-1"
    assert (msh[11], msh[12]) == ("P", "2.5")
    assert ack["MSA"][1:3] == ["AA", "TCP-1"]
    assert "ERR" not in ack
    assert len(stored(hub_app, PharmacyOrder, pharmacy_tenant.tenant_id)) == 1
    assert ('hub_hl7_messages_total{ack_code="AA",message_type="RDE^O11",transport="mllp"}'
            in mllp_listener.metrics_text())


def test_a_frame_split_across_packets_is_read_whole(mllp_listener, pharmacy_tenant):
    frame = framed(encoded(hl7_message(sender=pharmacy_tenant.sender, control_id="SPLIT-1")))
    with mllp_listener.connect() as connection:
        connection.sendall(frame[:7])
        connection.settimeout(0.3)
        with pytest.raises(TimeoutError):
            connection.recv(1)  # no ACK for half a message
        connection.settimeout(10)
        connection.sendall(frame[7:-1])
        connection.sendall(frame[-1:])
        ack = ack_segments(read_frame(connection))

    assert ack["MSA"][1:3] == ["AA", "SPLIT-1"]


def test_several_messages_in_one_packet_get_one_ack_each_in_order(mllp_listener,
                                                                   pharmacy_tenant):
    acks = exchange(mllp_listener, *(encoded(hl7_message(
        kind, sender=pharmacy_tenant.sender, control_id=f"MANY-{number}"))
        for number, kind in enumerate(("RDE^O11", "RDS^O13", "RAS^O17"))))

    assert [ack["MSA"][1:3] for ack in acks] == [["AA", "MANY-0"], ["AA", "MANY-1"],
                                                 ["AA", "MANY-2"]]
    assert [ack["MSH"][9] for ack in acks] == ["ACK^O11^ACK", "ACK^O13^ACK", "ACK^O17^ACK"]


def test_a_repeated_control_id_is_acknowledged_twice_and_stored_once(mllp_listener, hub_app,
                                                                      pharmacy_tenant):
    message = encoded(hl7_message("RDS^O13", sender=pharmacy_tenant.sender, control_id="DUP-1"))

    first, second = exchange(mllp_listener, message, message)

    assert first["MSA"][1:3] == second["MSA"][1:3] == ["AA", "DUP-1"]
    assert len(stored(hub_app, PharmacyDispense, pharmacy_tenant.tenant_id)) == 1
    [receipt] = stored(hub_app, Hl7Message, pharmacy_tenant.tenant_id)
    assert receipt.repeats == 1


def test_an_unknown_message_type_is_rejected_with_200(mllp_listener, pharmacy_tenant):
    [ack] = exchange(mllp_listener, encoded(hl7_message("ADT^A01", sender=pharmacy_tenant.sender,
                                                        control_id="ADT-1")))

    assert ack["MSA"][1:3] == ["AR", "ADT-1"]
    assert ack["MSH"][9] == "ACK^A01^ACK"
    assert ('hub_hl7_messages_total{ack_code="AR",message_type="other",transport="mllp"}'
            in mllp_listener.metrics_text())
    assert ack["ERR"][2] == "MSH^1^9"
    assert ack["ERR"][3] == "200^Unsupported message type^HL70357"
    assert ack["ERR"][4] == "E"


def test_wrong_encoding_characters_get_an_ack_from_the_hubs_own_header(mllp_listener,
                                                                        pharmacy_tenant):
    [ack] = exchange(mllp_listener, encoded(hl7_message(sender=pharmacy_tenant.sender,
                                                        control_id="ENC-1", encoding="#~\\&")))

    assert ack["MSH"][3:5] == ["MEDHUB", "MEDHUB"] and ack["MSH"][9] == "ACK"
    assert ack["MSA"][1:3] == ["AR", "ENC-1"]
    assert ack["ERR"][3].startswith("102^")


def test_bytes_not_valid_utf8_are_rejected_with_102(mllp_listener, pharmacy_tenant):
    message = encoded(hl7_message(sender=pharmacy_tenant.sender, control_id="BYTES-1"))
    broken = message.replace(b"Morphine", b"Morph\xff\xfeine")

    [ack] = exchange(mllp_listener, broken)

    assert ack["MSA"][1:3] == ["AR", "BYTES-1"]
    assert ack["ERR"][2] == "MSH^1^18" and ack["ERR"][3].startswith("102^")


def test_latin1_declared_in_msh18_is_read_as_latin1(mllp_listener, pharmacy_tenant):
    message = hl7_message(sender=pharmacy_tenant.sender, control_id="LATIN-1", charset="8859/1")
    raw = message.replace("Morphine", "Morphine é").encode("latin-1")

    [ack] = exchange(mllp_listener, raw)

    assert ack["MSA"][1:3] == ["AA", "LATIN-1"]


def test_a_truncated_message_is_rejected_with_a_segment_error(mllp_listener, pharmacy_tenant):
    text = hl7_message(sender=pharmacy_tenant.sender, control_id="CUT-1")
    cut = text[:text.index("\rRXE|") + 12]

    [ack] = exchange(mllp_listener, encoded(cut))

    assert ack["MSA"][1:3] == ["AR", "CUT-1"]
    assert ack["ERR"][3].startswith("100^") and ack["ERR"][2] == "RXR"


def test_lf_separated_segments_are_accepted(mllp_listener, pharmacy_tenant):
    [ack] = exchange(mllp_listener, encoded(hl7_message(sender=pharmacy_tenant.sender,
                                                        control_id="LF-1", separator="\n")))

    assert ack["MSA"][1:3] == ["AA", "LF-1"]


def test_bad_framing_closes_the_connection_and_the_listener_keeps_serving(mllp_listener,
                                                                          pharmacy_tenant):
    with mllp_listener.connect() as connection:
        connection.sendall(b"MSH|no start block" + b"\x1c\r")
        wait_until(lambda: closed_by_peer(connection), timeout=10, description="close")

    [ack] = exchange(mllp_listener, encoded(hl7_message(sender=pharmacy_tenant.sender)))
    assert ack["MSA"][1] == "AA"
    assert 'hub_mllp_connections_refused_total{reason="framing"}' in mllp_listener.metrics_text()


def test_an_oversized_message_gets_ar_and_the_connection_is_closed(mllp_listener,
                                                                   pharmacy_tenant):
    big = hl7_message(sender=pharmacy_tenant.sender, extra=("NTE|1||" + "x" * 70000,))
    with mllp_listener.connect() as connection:
        connection.sendall(framed(encoded(big)))
        ack = ack_segments(read_frame(connection))
        wait_until(lambda: closed_by_peer(connection), timeout=10, description="close")

    assert ack["MSA"][1] == "AR" and ack["ERR"][3].startswith("207^")
    assert 'reason="oversize"' in mllp_listener.metrics_text()


def test_an_idle_connection_is_closed_after_the_idle_timeout(mllp_listener):
    with mllp_listener.connect() as connection:
        connection.sendall(b"\x0bMSH|^~\\&|half a message")
        wait_until(lambda: closed_by_peer(connection), timeout=10, description="idle close")

    assert 'reason="idle"' in mllp_listener.metrics_text()


def test_connections_over_the_cap_are_closed_and_a_freed_slot_serves_again(mllp_listener,
                                                                           pharmacy_tenant):
    held = [mllp_listener.connect() for _ in range(4)]
    try:
        for connection in held:  # each is being served once its message is answered
            connection.sendall(framed(encoded(hl7_message(sender=pharmacy_tenant.sender))))
            assert ack_segments(read_frame(connection))["MSA"][1] == "AA"
        with mllp_listener.connect() as extra:
            wait_until(lambda: closed_by_peer(extra), timeout=10, description="refusal")
    finally:
        for connection in held:
            connection.close()

    def served() -> bool:
        return exchange(mllp_listener, encoded(hl7_message(
            sender=pharmacy_tenant.sender)))[0]["MSA"][1] == "AA"

    wait_until(served, timeout=10, description="a freed slot")
    assert 'reason="too_many_connections"' in mllp_listener.metrics_text()
    # Every slot free again before the next test (the listener sees each close on its own).
    wait_until(lambda: "\nhub_mllp_connections 0.0" in mllp_listener.metrics_text(),
               timeout=10, description="all connections closed")


def test_garbage_and_empty_frames_are_answered_and_never_stop_the_listener(mllp_listener,
                                                                           pharmacy_tenant):
    acks = exchange(mllp_listener, b"", b"\x00\xff garbage", b"MSH|", b"MSH|^~\\&",
                    "MSH|^~\\&|A|B|||x||ADT|1|P|2.5\rPID|é".encode())

    assert [ack["MSA"][1] for ack in acks] == ["AR"] * 5
    assert mllp_listener.process.poll() is None


def test_no_seeded_patient_data_in_the_listeners_log_acks_or_metrics(mllp_listener,
                                                                     pharmacy_tenant):
    messages = [hl7_message(kind, sender=pharmacy_tenant.sender)
                for kind in ("RDE^O11", "RDS^O13", "RAS^O17")]
    messages += [hl7_message("RAS^O17", sender=pharmacy_tenant.sender, ndc="1"),
                 hl7_message(sender=("NOBODY", str(uuid.uuid4())[:8]))]
    acks = exchange(mllp_listener, *(encoded(message) for message in messages))

    text = repr(acks) + mllp_listener.log_text() + mllp_listener.metrics_text()
    assert [value for value in SEEDED_PHI if value in text] == []
    assert "hl7 message answered" in mllp_listener.log_text()


def test_the_listener_refuses_nothing_while_a_connection_is_slow(mllp_listener,
                                                                 pharmacy_tenant):
    with mllp_listener.connect() as slow:
        slow.sendall(b"\x0bMSH|^~\\&|")  # a message that is still arriving
        [ack] = exchange(mllp_listener, encoded(hl7_message(sender=pharmacy_tenant.sender)))
    assert ack["MSA"][1] == "AA"



@pytest.mark.faults
def test_with_the_database_unavailable_a_message_gets_ar_nothing_is_stored_then_aa(
        mllp_listener, hub_app, hub_settings, pharmacy_tenant):
    message = encoded(hl7_message(sender=pharmacy_tenant.sender, control_id="DB-DOWN-1"))

    def send() -> dict:
        # A write waits for SQLite's busy timeout (10 s) before it fails: a longer read timeout.
        with mllp_listener.connect(timeout=30) as connection:
            connection.sendall(framed(message))
            return ack_segments(read_frame(connection))

    with database_outage(hub_settings.database_url):
        refused = send()

    # AR (table 0008: not processed for a reason unrelated to content; the sender resends),
    # for this control id, ERR 207; nothing stored, no receipt; the listener still running.
    assert refused["MSA"][1:3] == ["AR", "DB-DOWN-1"]
    assert refused["ERR"][3].startswith("207^") and refused["ERR"][4] == "E"
    assert refused["MSH"][3:5] == ["MEDHUB", "MEDHUB"]
    assert stored(hub_app, PharmacyOrder, pharmacy_tenant.tenant_id) == []
    assert stored(hub_app, Hl7Message, pharmacy_tenant.tenant_id) == []
    assert mllp_listener.process.poll() is None
    assert "hl7 message refused: database-unavailable" in mllp_listener.log_text()

    # The sender's resend, once the database is back, is accepted and stored once.
    assert send()["MSA"][1:3] == ["AA", "DB-DOWN-1"]
    assert len(stored(hub_app, PharmacyOrder, pharmacy_tenant.tenant_id)) == 1
