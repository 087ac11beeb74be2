"""System B's database: wards, patients and the medication administration record.

The native wire shape — snake_case, NDC-11 without dashes, ``ICU3`` ward codes, UTC times with
``Z`` — is produced here on the way out, and only here.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from demo_systems.database import ReadOnlyDatabase, insert_rows, run_statements
from demo_systems.formulary import Drug
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
    """Read access to the eMAR database, answering in the native wire shape."""

    def __init__(self, database: ReadOnlyDatabase):
        self.database = database
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
            "given_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["given_epoch"])),
            "nurse_id": row["nurse_id"],
            "note": row["note"],
            "container_barcode": row["container_barcode"],
            "ward": row["ward"],
        }
