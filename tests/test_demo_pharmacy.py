"""Demo System C: the pharmacy's HL7 v2.5 stream, its seeded discrepancies, and its MLLP sender."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import hl7
import pytest
from hl7.mllp import start_hl7_server

from demo_systems.pharmacy import messages as pharmacy_messages
from demo_systems.pharmacy import store as pharmacy_store
from demo_systems.pharmacy.sender import PROGRESS_FILE, Progress
from demo_systems.seeding import seed
from demo_systems.sites import site_by_facility
from tests.fixtures.processes import free_port, stop_process_group, wait_until

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MALFORMED = set(pharmacy_messages.MALFORMED_KINDS)


def all_messages(data_dir: Path) -> list[pharmacy_messages.OutboundMessage]:
    connection = pharmacy_store.open_read_only(data_dir / pharmacy_store.FILE_NAME)
    try:
        return [message for _, message in pharmacy_messages.stream(connection)]
    finally:
        connection.close()


def stream_digest(data_dir: Path) -> str:
    digest = hashlib.sha256()
    for message in all_messages(data_dir):
        digest.update(message.encoded())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def small_world(tmp_path_factory) -> Path:
    """A world small enough to send whole in a test (about 1,300 messages)."""
    root = tmp_path_factory.mktemp("pharmacy-world")
    seed(data_dir=root / "data", seed=5150, administrations=600, keys_out=root / "keys")
    return root / "data"


# --- the messages ------------------------------------------------------------------------

def test_same_seed_streams_the_same_messages_and_another_seed_does_not(tmp_path):
    for name, seed_value in (("a", 11), ("b", 11), ("c", 12)):
        seed(data_dir=tmp_path / name, seed=seed_value, administrations=500, keys_out=tmp_path / "keys")
    assert stream_digest(tmp_path / "a") == stream_digest(tmp_path / "b")
    assert stream_digest(tmp_path / "a") != stream_digest(tmp_path / "c")


def test_every_wellformed_message_parses_and_carries_the_promised_fields(demo_data_dir):
    patients = {mrn: (name, birth_date) for mrn, name, birth_date in sqlite3.connect(
        demo_data_dir / "administration.db").execute("SELECT mrn, full_name, birth_date FROM patients")}
    kinds = Counter()
    control_ids = set()
    for message in all_messages(demo_data_dir):
        kinds[message.kind] += 1
        if message.kind in MALFORMED or message.kind == "duplicate":
            continue
        assert "\n" not in message.text and message.text.endswith("\r")
        parsed = hl7.parse(message.text)
        msh = parsed.segment("MSH")
        assert str(msh(2)) == "^~\\&"
        assert str(msh(3)) == "DEMO-PHARMACY"
        facility = str(msh(4))
        site = site_by_facility(facility)
        assert site is not None
        assert (str(msh(5)), str(msh(6))) == ("MEDHUB", "MEDHUB")
        assert str(msh(9)) == {"RDE^O11": "RDE^O11^RDE_O11", "RDS^O13": "RDS^O13^RDS_O13",
                               "RAS^O17": "RAS^O17^RAS_O17"}[message.kind]
        assert str(msh(10)) == message.control_id and message.control_id not in control_ids
        control_ids.add(message.control_id)
        assert str(msh(12)) == "2.5"
        pid = parsed.segment("PID")
        mrn = str(pid(3)(1)(1))
        name, birth_date = patients[mrn]
        assert f"{pid(5)(1)(2)} {pid(5)(1)(1)}" == name
        assert str(pid(7)) == birth_date.replace("-", "")
        unit = str(parsed.segment("PV1")(3)(1)(1))
        assert unit in {u.code for u in site.units}
        assert str(parsed.segment("ORC")(2)(1)(1)).startswith("RX")
        if message.kind == "RDS^O13":
            rxd = parsed.segment("RXD")
            assert str(rxd(2)(1)(3)) == "NDC" and len(str(rxd(2)(1)(1))) == 11
            assert float(str(rxd(4))) > 0 and str(rxd(5))
            assert len(str(rxd(3))) == len("20261118081500+0000")
            assert str(rxd(13)(1)(1)) == unit and str(rxd(13)(1)(4)) == facility
        elif message.kind == "RAS^O17":
            rxa = parsed.segment("RXA")
            assert str(rxa(5)(1)(3)) == "NDC" and float(str(rxa(6))) > 0 and str(rxa(7))
            assert str(rxa(11)(1)(1)) == unit
        else:
            rxe = parsed.segment("RXE")
            assert str(rxe(2)(1)(3)) == "NDC" and float(str(rxe(3))) > 0 and str(rxe(5))
    assert kinds["RDE^O11"] > kinds["RDS^O13"] > 0 and kinds["RAS^O17"] > 0
    assert kinds["duplicate"] > 0
    assert all(kinds[kind] > 0 for kind in MALFORMED)


def test_malformed_messages_are_broken_the_way_their_kind_says(demo_data_dir):
    by_kind = {}
    for message in all_messages(demo_data_dir):
        by_kind.setdefault(message.kind, message)
    assert by_kind["bad-encoding-characters"].text.startswith("MSH|#~\\&|")
    assert "|ZPH^Z01^ZPH_Z01|" in by_kind["unknown-message-type"].text
    truncated = by_kind["truncated-segment"].text
    assert not truncated.endswith("\r") and truncated.rsplit("\r", 1)[-1].startswith("RXE||")
    duplicate = by_kind["duplicate"]
    assert sum(1 for m in all_messages(demo_data_dir) if m.control_id == duplicate.control_id) == 2


def test_seeded_discrepancies_in_the_ground_truth_match_the_stream_and_the_emar(demo_data_dir):
    # Independent count: join the wire messages (order number, MRN, NDC, times) with System B's
    # own rows, without the pharmacy database or the generator.
    dispensed = {}   # order number -> (facility, unit, ndc11, quantity)
    reported = {}    # order number -> (mrn, ndc11, given time)
    for message in all_messages(demo_data_dir):
        if message.kind not in ("RDS^O13", "RAS^O17"):
            continue
        parsed = hl7.parse(message.text)
        order = str(parsed.segment("ORC")(2)(1)(1))
        facility = str(parsed.segment("MSH")(4))
        unit = str(parsed.segment("PV1")(3)(1)(1))
        if message.kind == "RDS^O13":
            rxd = parsed.segment("RXD")
            dispensed[order] = (facility, unit, str(rxd(2)(1)(1)), float(str(rxd(4))))
        else:
            rxa = parsed.segment("RXA")
            reported[order] = (str(parsed.segment("PID")(3)(1)(1)), str(rxa(5)(1)(1)), str(rxa(3)))
    emar = sqlite3.connect(demo_data_dir / "administration.db")
    charted = Counter()
    charted_by_unit = Counter()
    for facility, ward, mrn, ndc11, given in emar.execute(
            "SELECT a.facility, a.ward, p.mrn, a.ndc11, a.given_epoch FROM administrations a"
            " JOIN patients p ON p.id = a.patient_id WHERE a.facility IN ('NGH', 'RVH')"):
        stamp = pharmacy_messages._timestamp(given)
        charted[(mrn, ndc11, stamp)] += 1
        charted_by_unit[(facility, ward, ndc11)] += 1
    dispensed_doses = Counter(reported[order] for order in dispensed if order in reported)
    expected = Counter()
    for order, (facility, unit, ndc11, _) in dispensed.items():
        expected[(facility, unit, ndc11, "dispenses")] += 1
        if order not in reported or charted[reported[order]] == 0:
            expected[(facility, unit, ndc11, "dispensed_never_charted")] += 1
    undispensed_total = sum(max(0, count - dispensed_doses[dose]) for dose, count in charted.items())

    truth = json.loads((demo_data_dir / "ground-truth.json").read_text())["pharmacy"]
    rows = truth["dispensing_by_site_unit_ndc11"]
    for row in rows:
        key = (row["facility"], row["unit"], row["ndc11"])
        assert row["dispenses"] == expected[(*key, "dispenses")]
        assert row["dispensed_never_charted"] == expected[(*key, "dispensed_never_charted")]
        assert row["administrations"] == charted_by_unit[(row["facility"], row["unit"].replace("-", ""),
                                                          row["ndc11"])]
    uncharted_total = sum(row["dispensed_never_charted"] for row in rows)
    assert uncharted_total == sum(v for k, v in expected.items() if k[3] == "dispensed_never_charted")
    assert sum(row["charted_never_dispensed"] for row in rows) == undispensed_total
    assert uncharted_total > 0 and undispensed_total > 0
    totals = truth["totals_by_site"]
    assert set(totals) == {"north-general", "river-valley"}
    assert sum(t["dispenses"] for t in totals.values()) == len(dispensed)


def test_pharmacy_runs_only_where_both_other_systems_run(demo_manifest):
    sites = {entry["site"]: entry for entry in demo_manifest["sites"]}
    assert "pharmacy" not in sites["lakeside-clinic"]["systems"]
    assert sites["river-valley"]["systems"]["pharmacy"]["options"]["senders"] == [
        {"application": "DEMO-PHARMACY", "facility": "RVH"}]


# --- the sender over real TCP --------------------------------------------------------------

class AckingListener:
    """A tiny MLLP listener (the hl7 library's server) that answers AA to whatever parses,
    AR otherwise, and records every message text it receives."""

    def __init__(self, port: int):
        self.port = port
        self.received: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = None
        self.writers = set()

    def start(self) -> AckingListener:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            start_hl7_server(self._session, "127.0.0.1", self.port), self.loop).result(10)
        return self

    def stop(self) -> None:
        async def close():
            self.server.close()
            for writer in list(self.writers):
                writer.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _session(self, reader, writer):
        self.writers.add(writer)
        try:
            while True:
                block = (await reader.readblock()).decode("utf-8")
                self.received.append(block)
                try:
                    ack = hl7.parse(block).create_ack("AA", application="MEDHUB", facility="MEDHUB")
                    writer.writemessage(ack)
                except Exception:  # noqa: BLE001 - whatever does not parse is refused
                    writer.writeblock(b"MSH|^~\\&|MEDHUB|MEDHUB|||20261120000000||ACK|R1|P|2.5\rMSA|AR|\r")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


def control_id(text: str) -> str:
    return text.split("\r", 1)[0].split("|")[9]


def run_sender(data_dir: Path, port: int, *extra: str, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "demo_systems", "send-pharmacy", "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--port", str(port), "--exit-when-done", "--ack-timeout", "5",
         "--verbose", *extra],
        cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def fresh_progress(small_world):
    (small_world / PROGRESS_FILE).unlink(missing_ok=True)
    yield small_world
    (small_world / PROGRESS_FILE).unlink(missing_ok=True)


def test_sender_sends_everything_and_resends_nothing_after_a_restart(fresh_progress, tmp_path):
    data_dir = fresh_progress
    expected = [m.text for m in all_messages(data_dir)]
    listener = AckingListener(free_port()).start()
    try:
        first = run_sender(data_dir, listener.port, "--rate", "0", "--limit", "100",
                           log_path=tmp_path / "sender.log")
        assert first.wait(60) == 0
        assert listener.received == expected[:100]
        second = run_sender(data_dir, listener.port, "--rate", "0", log_path=tmp_path / "sender.log")
        assert second.wait(120) == 0
        assert listener.received == expected
        third = run_sender(data_dir, listener.port, "--rate", "0", log_path=tmp_path / "sender.log")
        assert third.wait(60) == 0
        assert len(listener.received) == len(expected)
    finally:
        listener.stop()
    log = (tmp_path / "sender.log").read_text()
    assert "AA=" in log and "AR=" in log
    assert "MRN" not in log


def test_sender_waits_for_the_listener_and_reconnects_after_it_restarts(fresh_progress, tmp_path):
    data_dir = fresh_progress
    expected_ids = {m.control_id for m in all_messages(data_dir)}
    port = free_port()
    log_path = tmp_path / "sender.log"
    sender = run_sender(data_dir, port, "--rate", "300", log_path=log_path)
    try:
        wait_until(lambda: "unreachable" in log_path.read_text(), timeout=30,
                   description="the sender noticing nobody listens")
        listener = AckingListener(port).start()
        wait_until(lambda: len(listener.received) >= 200, timeout=60, description="200 messages")
        listener.stop()
        seen = list(listener.received)
        listener = AckingListener(port).start()
        try:
            assert sender.wait(120) == 0
        finally:
            listener.stop()
    finally:
        stop_process_group(sender)
    assert {control_id(text) for text in seen + listener.received} == expected_ids
    assert listener.received, "the sender went on after the listener came back"
    assert log_path.read_text().count("connected to the hub's MLLP listener") >= 2


def test_progress_of_another_world_is_ignored_so_a_reseeded_stream_starts_over(tmp_path):
    Progress(tmp_path, {"seed": 1, "orders": 500}).save((120, 2))

    assert Progress(tmp_path, {"seed": 1, "orders": 500}).load() == (120, 2)
    assert Progress(tmp_path, {"seed": 1, "orders": 900}).load() == (0, 0)
    assert Progress(tmp_path, {"seed": 2, "orders": 500}).load() == (0, 0)
