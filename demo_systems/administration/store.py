"""System B's database: wards, patients and the medication administration record.

The native wire shape — snake_case, NDC-11 without dashes, ``ICU3`` ward codes, UTC times with
``Z`` — is produced here on the way out, and only here.
"""
from __future__ import annotations

import random
import sqlite3
import time
from dataclasses import dataclass

from demo_systems.database import ReadOnlyDatabase, RecordingDatabase, insert_rows, run_statements
from demo_systems.formulary import FORMULARY, Drug
from demo_systems.sites import ADMINISTRATION, Site
from demo_systems.world import ADMINISTRATION_COLUMNS, PATIENT_COLUMNS, Batch, Patient

FILE_NAME = "administration.db"

SCHEMA = """
CREATE TABLE facilities (facility TEXT PRIMARY KEY, site TEXT NOT NULL, name TEXT NOT NULL,
                         timezone TEXT NOT NULL);
CREATE TABLE wards (facility TEXT NOT NULL, ward TEXT NOT NULL, name TEXT NOT NULL,
                    PRIMARY KEY (facility, ward));
CREATE TABLE medications (ndc11 TEXT PRIMARY KEY, description TEXT NOT NULL, uom TEXT NOT NULL);
CREATE TABLE patients (id INTEGER PRIMARY KEY, facility TEXT NOT NULL, mrn TEXT NOT NULL,
                       full_name TEXT NOT NULL, birth_date TEXT NOT NULL);
CREATE TABLE administrations (id INTEGER PRIMARY KEY, facility TEXT NOT NULL, ward TEXT NOT NULL,
                              patient_id INTEGER NOT NULL, ndc11 TEXT NOT NULL, dose_qty REAL NOT NULL,
                              route TEXT NOT NULL, given_epoch INTEGER NOT NULL,
                              nurse_id TEXT NOT NULL, note TEXT, container_barcode TEXT);
"""

# The change feed: one row per administration charted while the system runs, in charting
# order. ``sequence`` is the feed position (AUTOINCREMENT: never reused, only grows);
# ``recorded_epoch`` is when the nurse charted it, which may be hours after ``given_epoch`` (a
# late-charted dose). The seeded world predates the feed. Its index serves "this facility's
# feed after N" and "where does the feed reach time T", whatever the size of the record.
CHANGE_FEED = """
CREATE TABLE IF NOT EXISTS charting_log (sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                                         facility TEXT NOT NULL,
                                         administration_id INTEGER NOT NULL,
                                         recorded_epoch INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS charting_log_by_facility ON charting_log (facility, sequence);
CREATE INDEX IF NOT EXISTS charting_log_by_time ON charting_log (facility, recorded_epoch)
"""

LATE_CHARTING_RATE = 0.15
"""Share of newly charted doses charted one to six hours after they were given."""

# An index on (facility) is ordered by (facility, id), so the plain cursor walk needs no sort.
# The others serve the hub's time-window queries ("ward ICU3 yesterday", "drug X today"); their
# matches are few enough that sorting them by id costs less than scanning in id order.
INDEXES = """
CREATE INDEX administrations_by_facility ON administrations (facility);
CREATE INDEX administrations_by_ward_time ON administrations (facility, ward, given_epoch);
CREATE INDEX administrations_by_ndc_time ON administrations (facility, ndc11, given_epoch);
CREATE INDEX administrations_by_time ON administrations (facility, given_epoch);
"""


# --- seeding -------------------------------------------------------------------------------

def create_schema(connection: sqlite3.Connection, sites: tuple[Site, ...],
                  formulary: tuple[Drug, ...], patients: list[Patient]) -> None:
    """Create the tables and load facilities, wards, medications and patients."""
    run_statements(connection, SCHEMA)
    run_statements(connection, CHANGE_FEED)
    served = [site for site in sites if site.has(ADMINISTRATION)]
    insert_rows(connection, "facilities", ("facility", "site", "name", "timezone"),
                [(s.facility, s.slug, s.name, s.timezone) for s in served])
    insert_rows(connection, "wards", ("facility", "ward", "name"),
                [(s.facility, u.ward, u.name) for s in served for u in s.units])
    insert_rows(connection, "medications", ("ndc11", "description", "uom"),
                [(d.ndc11, d.description, d.dose_uom) for d in formulary])
    insert_rows(connection, "patients", PATIENT_COLUMNS, (p.row() for p in patients))


def insert_batch(connection: sqlite3.Connection, batch: Batch) -> None:
    """Append one batch of administrations."""
    insert_rows(connection, "administrations", ADMINISTRATION_COLUMNS, batch.administrations)


def create_indexes(connection: sqlite3.Connection) -> None:
    """Build the query indexes once the rows are in."""
    run_statements(connection, INDEXES)


# --- serving -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdministrationFilter:
    """Query-string filters of the administration listing, already validated."""

    ward: str | None = None
    ndc11: str | None = None
    since: float | None = None
    until: float | None = None


class AdministrationStore:
    """Access to the eMAR database, answering in the native wire shape; doses charted while
    the system runs go through ``recorder`` and its change feed."""

    def __init__(self, database: ReadOnlyDatabase, recorder: RecordingDatabase | None = None):
        self.database = database
        self.recorder = recorder
        if recorder is not None:
            recorder.prepare(CHANGE_FEED)
        self.medications = {row["ndc11"]: row for row in database.all("SELECT * FROM medications")}
        self.facilities = {row["facility"]: row for row in database.all("SELECT * FROM facilities")}

    def wards(self, facility: str) -> list[dict]:
        """The wards of a facility."""
        rows = self.database.all(
            "SELECT ward, name FROM wards WHERE facility = ? ORDER BY rowid", (facility,))
        return [{"ward": row["ward"], "name": row["name"]} for row in rows]

    def administrations(self, facility: str, where: AdministrationFilter, *, after_id: int,
                        page_size: int) -> tuple[list[dict], int | None]:
        """Up to ``page_size`` administrations with id above ``after_id``, in id order.

        Returns the page and the id to continue after, or None on the last page.
        """
        # With a time window, "+a.id" stops SQLite from walking the whole facility in id order
        # (its unguided favourite) and lets it seek the window in a time index instead.
        windowed = where.since is not None or where.until is not None
        clauses, params = ["a.facility = ?", "+a.id > ?" if windowed else "a.id > ?"], [facility, after_id]
        for clause, value in (("a.ward = ?", where.ward), ("a.ndc11 = ?", where.ndc11),
                              ("a.given_epoch >= ?", where.since), ("a.given_epoch < ?", where.until)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = self.database.all(
            "SELECT a.*, p.mrn, p.full_name, p.birth_date FROM administrations a"
            " JOIN patients p ON p.id = a.patient_id"
            f" WHERE {' AND '.join(clauses)} ORDER BY a.id LIMIT ?",
            [*params, page_size + 1])
        more = len(rows) > page_size
        rows = rows[:page_size]
        return [self._administration(row) for row in rows], (rows[-1]["id"] if more else None)

    def changes(self, facility: str, *, after_sequence: int, recorded_since: float | None,
                page_size: int) -> tuple[list[dict], int]:
        """Up to ``page_size`` administrations charted after feed position ``after_sequence``
        (and at or after ``recorded_since``), in feed order, each with its ``sequence`` and
        ``recorded_at``; and the feed's head (its latest position, 0 when empty)."""
        head = self.database.one("SELECT coalesce(max(sequence), 0) FROM charting_log"
                                 " WHERE facility = ?", (facility,))[0]
        if page_size == 0:
            return [], head
        clauses, params = ["l.facility = ?", "l.sequence > ?"], [facility, after_sequence]
        if recorded_since is not None:
            clauses.append("l.recorded_epoch >= ?")
            params.append(recorded_since)
        rows = self.database.all(
            "SELECT l.sequence, l.recorded_epoch, a.*, p.mrn, p.full_name, p.birth_date"
            " FROM charting_log l JOIN administrations a ON a.id = l.administration_id"
            " JOIN patients p ON p.id = a.patient_id"
            f" WHERE {' AND '.join(clauses)} ORDER BY l.sequence LIMIT ?", [*params, page_size])
        return [{**self._administration(row), "sequence": row["sequence"],
                 "recorded_at": _utc(row["recorded_epoch"])} for row in rows], head

    def chart_new(self, facility: str, *, count: int, now: int, seed: int) -> dict:
        """Chart ``count`` new doses at ``facility`` as of ``now`` (epoch seconds): random
        wards, patients, drugs and nurses, some charted late. Deterministic for a seed and a
        feed position. Returns the new administration ids and feed positions."""
        def chart(connection: sqlite3.Connection) -> dict:
            head = connection.execute("SELECT coalesce(max(sequence), 0) FROM charting_log"
                                      " WHERE facility = ?", (facility,)).fetchone()[0]
            rand = random.Random(f"{seed}/live/{ADMINISTRATION}/{facility}/{head}").random
            wards = [row[0] for row in connection.execute(
                "SELECT ward FROM wards WHERE facility = ? ORDER BY rowid", (facility,))]
            patients = connection.execute("SELECT id, full_name FROM patients"
                                          " WHERE facility = ? ORDER BY id", (facility,)).fetchall()
            next_id = connection.execute("SELECT coalesce(max(id), 0) FROM administrations"
                                         ).fetchone()[0] + 1
            ids, sequences = [], []
            for number in range(count):
                administration_id = next_id + number
                patient = patients[int(rand() * len(patients))]
                drug = FORMULARY[int(rand() * len(FORMULARY))]
                late = rand() < LATE_CHARTING_RATE
                given = now - (3600 + int(rand() * 5 * 3600) if late else int(rand() * 600))
                roll = rand()
                # Some notes name the patient, as the seeded ones do: PHI the hub must drop.
                note = None if roll < 0.6 else "Given as ordered." if roll < 0.85 else \
                    f"{patient['full_name']} tolerated the dose well."
                connection.execute(
                    f"INSERT INTO administrations ({', '.join(ADMINISTRATION_COLUMNS)})"
                    f" VALUES ({', '.join('?' for _ in ADMINISTRATION_COLUMNS)})",
                    (administration_id, facility, wards[int(rand() * len(wards))], patient["id"],
                     drug.ndc11, drug.doses[int(rand() * len(drug.doses))],
                     drug.routes[int(rand() * len(drug.routes))], given,
                     f"RN{10_000 + int(rand() * 90_000):05d}", note,
                     f"33{administration_id:010d}"))
                sequences.append(connection.execute(
                    "INSERT INTO charting_log (facility, administration_id, recorded_epoch)"
                    " VALUES (?, ?, ?)", (facility, administration_id, now)).lastrowid)
                ids.append(f"{facility}-A{administration_id:09d}")
            return {"ids": ids, "first_sequence": sequences[0] if sequences else None,
                    "head_sequence": sequences[-1] if sequences else head}

        return self.recorder.write(chart)

    def phi(self) -> dict:
        """Every seeded patient identifier and nurse note, as they appear on the wire."""
        patients = [{"full_name": row["full_name"], "mrn": row["mrn"], "birth_date": row["birth_date"]}
                    for row in self.database.all(
                        "SELECT full_name, mrn, birth_date FROM patients ORDER BY id")]
        notes = [row["note"] for row in self.database.all(
            "SELECT DISTINCT note FROM administrations WHERE note IS NOT NULL ORDER BY note")]
        return {"patients": patients, "notes": notes}

    def _administration(self, row: sqlite3.Row) -> dict:
        medication = self.medications[row["ndc11"]]
        return {
            "admin_id": f"{row['facility']}-A{row['id']:09d}",
            "patient": {"full_name": row["full_name"], "mrn": row["mrn"], "birth_date": row["birth_date"]},
            "med": {"ndc11": row["ndc11"], "description": medication["description"]},
            "dose": {"qty": row["dose_qty"], "uom": medication["uom"]},
            "route": row["route"],
            "given_at": _utc(row["given_epoch"]),
            "nurse_id": row["nurse_id"],
            "note": row["note"],
            "container_barcode": row["container_barcode"],
            "ward": row["ward"],
        }


def _utc(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
