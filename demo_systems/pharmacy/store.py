"""System C's database: the pharmacy's patients and medication orders.

The pharmacy runs at the sites that run both other systems, so the three-way reconciliation
(pharmacy dispenses, eMAR administrations, inventory dispenses) has all three sides there.
Lakeside Clinic has no pharmacy system.

Every dose the eMAR charts at such a site was ordered through the pharmacy and is reported back
to it (RAS). Known discrepancies are seeded from the pharmacy's own random stream, so Systems A
and B stay exactly as they were:

* about :data:`CHARTED_NOT_DISPENSED_RATE` of charted doses were never dispensed by the pharmacy
  (the order and the administration exist, the dispense does not);
* about :data:`DISPENSED_NOT_CHARTED_RATE` (per charted dose) extra orders were dispensed for a
  patient on the unit but never charted in the eMAR (order and dispense, no administration).

One row per order holds its whole life (ordered → dispensed → given) so a million doses load
as a million rows, and the sender renders messages from the rows lazily.
"""
from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator

from demo_systems.database import insert_rows, run_statements
from demo_systems.formulary import Drug
from demo_systems.sites import ADMINISTRATION, INVENTORY, SITES, Site
from demo_systems.world import Batch, Patient

FILE_NAME = "pharmacy.db"
PRODUCT = "pharmacy"
"""The hub's product code of System C (migration 0001 created it)."""
SENDING_APPLICATION = "DEMO-PHARMACY"

CHARTED_NOT_DISPENSED_RATE = 0.015
DISPENSED_NOT_CHARTED_RATE = 0.02

PHARMACY_SITES: tuple[Site, ...] = tuple(
    site for site in SITES if site.has(INVENTORY) and site.has(ADMINISTRATION))

ORDER_COLUMNS = ("id", "facility", "unit", "patient_id", "ndc11", "quantity", "route",
                 "ordered_epoch", "dispensed_epoch", "given_epoch")
"""``dispensed_epoch`` is None for a charted dose never dispensed; ``given_epoch`` is None for a
dispense never charted (the pharmacy hears of administrations from the eMAR, RAS^O17)."""

SCHEMA = """
CREATE TABLE facilities (facility TEXT PRIMARY KEY, site TEXT NOT NULL);
CREATE TABLE medications (ndc11 TEXT PRIMARY KEY, description TEXT NOT NULL, uom TEXT NOT NULL);
CREATE TABLE patients (id INTEGER PRIMARY KEY, facility TEXT NOT NULL, mrn TEXT NOT NULL,
                       first_name TEXT NOT NULL, last_name TEXT NOT NULL, birth_date TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, facility TEXT NOT NULL, unit TEXT NOT NULL,
                     patient_id INTEGER NOT NULL, ndc11 TEXT NOT NULL, quantity REAL NOT NULL,
                     route TEXT NOT NULL, ordered_epoch INTEGER NOT NULL,
                     dispensed_epoch INTEGER, given_epoch INTEGER)
"""


def create_schema(connection: sqlite3.Connection, formulary: tuple[Drug, ...],
                  patients: list[Patient]) -> None:
    """Create the tables and load facilities, medications and the pharmacy sites' patients."""
    run_statements(connection, SCHEMA)
    insert_rows(connection, "facilities", ("facility", "site"),
                [(site.facility, site.slug) for site in PHARMACY_SITES])
    insert_rows(connection, "medications", ("ndc11", "description", "uom"),
                [(drug.ndc11, drug.description, drug.dose_uom) for drug in formulary])
    facilities = {site.facility for site in PHARMACY_SITES}
    insert_rows(connection, "patients",
                ("id", "facility", "mrn", "first_name", "last_name", "birth_date"),
                ((p.id, p.site.facility, p.mrn, p.first, p.last, p.birth_date)
                 for p in patients if p.site.facility in facilities))


class OrderBook:
    """Turns the world's administrations into pharmacy orders, batch by batch.

    Its random stream (``"{seed}/pharmacy"``) is its own, so adding the pharmacy shifts nothing
    in Systems A and B.
    """

    def __init__(self, seed: int, formulary: tuple[Drug, ...]):
        self.rand = random.Random(f"{seed}/pharmacy").random
        self.next_id = 0
        self.units_by_ward = {(site.facility, unit.ward): unit.code
                              for site in PHARMACY_SITES for unit in site.units}
        self.formulary = formulary
        self.drugs = {drug.ndc11: drug for drug in formulary}

    def orders(self, batch: Batch) -> list[tuple]:
        """The orders behind one batch of administrations, as rows of :data:`ORDER_COLUMNS`."""
        rand = self.rand
        units_by_ward = self.units_by_ward
        formulary = self.formulary
        rows = []
        for (_, facility, ward, patient_id, ndc11, dose, route, given, *_) in batch.administrations:
            unit = units_by_ward.get((facility, ward))
            if unit is None:
                continue
            dispensed = None if rand() < CHARTED_NOT_DISPENSED_RATE else given - 600 - int(rand() * 2_400)
            ordered = given - 3_600 - int(rand() * 14_400)
            self.next_id += 1
            rows.append((self.next_id, facility, unit, patient_id, ndc11, dose, route,
                         ordered, dispensed, given))
            if rand() < DISPENSED_NOT_CHARTED_RATE:
                drug = formulary[int(rand() * len(formulary))]
                spare_dispensed = given - 600 - int(rand() * 2_400)
                self.next_id += 1
                rows.append((self.next_id, facility, unit, patient_id, drug.ndc11,
                             drug.doses[int(rand() * len(drug.doses))],
                             drug.routes[int(rand() * len(drug.routes))],
                             spare_dispensed - 1_800 - int(rand() * 3_600), spare_dispensed, None))
        return rows


def insert_orders(connection: sqlite3.Connection, rows: list[tuple]) -> None:
    """Append one batch of orders."""
    insert_rows(connection, "orders", ORDER_COLUMNS, rows)


# --- reading, for the sender -----------------------------------------------------------------

def open_read_only(path) -> sqlite3.Connection:
    """Open a seeded pharmacy database read-only."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    return connection


def orders_from(connection: sqlite3.Connection, first_id: int, *,
                facilities: tuple[str, ...] | None = None) -> Iterator[sqlite3.Row]:
    """Orders with id ≥ ``first_id`` in id order, joined with patient and medication, streamed."""
    where, params = "o.id >= ?", [first_id]
    if facilities:
        where += f" AND o.facility IN ({', '.join('?' for _ in facilities)})"
        params += list(facilities)
    yield from connection.execute(
        "SELECT o.*, p.mrn, p.first_name, p.last_name, p.birth_date, m.description, m.uom"
        " FROM orders o JOIN patients p ON p.id = o.patient_id JOIN medications m ON m.ndc11 = o.ndc11"
        f" WHERE {where} ORDER BY o.id", params)
