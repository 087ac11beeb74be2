"""The numbers the hub's jobs are checked against, computed by SQL from the seeded databases.

Written once at seed time to ``<data-dir>/ground-truth.json`` because the inventory server can
see only its own database at runtime, yet reconciliation truth needs both. Each server then
serves its own part.

* ``administration``: counts and dose totals per site × ward × NDC-11 × UTC date, and per
  site × NDC-11 × UTC hour (the hourly view drops the ward to stay small at a million doses).
* ``inventory``: per site × unit of the sites running both systems, ``matched`` (doses whose
  barcode was dispensed to that unit), ``administered_without_dispense`` and
  ``dispensed_never_administered``.
* ``pharmacy``: per site × unit × NDC-11 of the pharmacy sites, what the pharmacy dispensed
  (``dispenses``, ``dispensed_quantity``), what the eMAR charted (``administrations``,
  ``administered_quantity``), what left inventory (``inventory_dispenses``), and the seeded
  discrepancies ``dispensed_never_charted`` and ``charted_never_dispensed``; plus per-site totals.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

from demo_systems.formulary import FORMULARY
from demo_systems.sites import ADMINISTRATION, INVENTORY, SITES, site_by_facility, site_by_slug_or_facility
from demo_systems.world import REFERENCE_END, WINDOW_START

FILE_NAME = "ground-truth.json"


def administration_part(administration_db: Path) -> dict:
    """The administration system's ground truth, from its database alone."""
    connection = sqlite3.connect(administration_db)
    try:
        return _administration_truth(connection)
    finally:
        connection.close()


def inventory_part(inventory_db: Path, administration_db: Path) -> dict:
    """The inventory system's reconciliation truth, which needs both databases."""
    connection = sqlite3.connect(inventory_db)
    try:
        connection.execute("ATTACH DATABASE ? AS emar", (str(administration_db),))
        return _reconciliation_truth(connection)
    finally:
        connection.close()


def pharmacy_part(pharmacy_db: Path, administration_db: Path, inventory_db: Path) -> dict:
    """The pharmacy's three-way reconciliation truth, which needs all three databases."""
    connection = sqlite3.connect(pharmacy_db)
    try:
        connection.execute("ATTACH DATABASE ? AS emar", (str(administration_db),))
        connection.execute("ATTACH DATABASE ? AS inventory", (str(inventory_db),))
        return _pharmacy_truth(connection)
    finally:
        connection.close()


def write(path: Path, truth: dict) -> None:
    """Write the ground truth file."""
    path.write_text(json.dumps(truth, separators=(",", ":")))


def load_part(path: Path, system: str) -> dict:
    """Read one system's part of the ground truth file."""
    return json.loads(path.read_text())[system]


def _administration_truth(connection: sqlite3.Connection) -> dict:
    # Bucket by integer day and hour in SQL and format in Python: string-formatting a million
    # timestamps inside GROUP BY costs several times more than the grouping itself.
    uom = dict(connection.execute("SELECT ndc11, uom FROM medications"))
    by_date = [
        {"site": site_by_facility(facility).slug, "facility": facility, "ward": ward, "ndc11": ndc11,
         "date": _utc(day * 86_400).strftime("%Y-%m-%d"), "count": count, "dose_total": dose_total,
         "dose_uom": uom[ndc11]}
        for facility, ward, ndc11, day, count, dose_total in connection.execute(
            "SELECT facility, ward, ndc11, given_epoch / 86400 AS day, count(*), sum(dose_qty)"
            " FROM administrations GROUP BY facility, ward, ndc11, day")
    ]
    by_hour = [
        {"site": site_by_facility(facility).slug, "facility": facility, "ndc11": ndc11,
         "hour": _utc(hour * 3_600).strftime("%Y-%m-%dT%H:00:00Z"), "count": count,
         "dose_total": dose_total, "dose_uom": uom[ndc11]}
        for facility, ndc11, hour, count, dose_total in connection.execute(
            "SELECT facility, ndc11, given_epoch / 3600 AS hour, count(*), sum(dose_qty)"
            " FROM administrations GROUP BY facility, ndc11, hour")
    ]
    totals = {site_by_facility(facility).slug: count for facility, count in connection.execute(
        "SELECT facility, count(*) FROM administrations GROUP BY facility")}
    return {"window_start": _utc(WINDOW_START).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "window_end": REFERENCE_END.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "administrations_by_site": totals,
            "by_site_ward_ndc11_date": by_date,
            "by_site_ndc11_hour": by_hour}


def _utc(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _reconciliation_truth(connection: sqlite3.Connection) -> dict:
    linked = [site for site in SITES if site.has(INVENTORY) and site.has(ADMINISTRATION)]
    connection.execute("CREATE TEMP TABLE linked_sites (site TEXT, facility TEXT)")
    connection.executemany("INSERT INTO linked_sites VALUES (?, ?)",
                           [(site.slug, site.facility) for site in linked])
    # The eMAR spells a unit without its dash; joining on replace() is exactly the mapping the
    # hub has to make, done here in SQL so the truth does not reuse the generator's own logic.
    connection.executescript("""
        CREATE TEMP TABLE given AS
            SELECT s.site, a.ward, a.container_barcode AS barcode
            FROM emar.administrations a JOIN linked_sites s ON s.facility = a.facility;
        CREATE INDEX temp.given_by_barcode ON given (barcode);
    """)
    counts: dict[tuple[str, str], dict[str, int]] = {}

    def tally(site: str, ward: str, measure: str, count: int) -> None:
        counts.setdefault((site, ward), {})[measure] = count

    for site, ward, matched, unmatched in connection.execute("""
            SELECT g.site, g.ward, sum(c.id IS NOT NULL), sum(c.id IS NULL)
            FROM given g LEFT JOIN containers c
              ON c.barcode = g.barcode AND c.site = g.site AND c.dispensed_epoch IS NOT NULL
             AND replace(c.unit, '-', '') = g.ward
            GROUP BY g.site, g.ward"""):
        tally(site, ward, "matched", matched)
        tally(site, ward, "administered_without_dispense", unmatched)
    for site, ward, unused in connection.execute("""
            SELECT c.site, replace(c.unit, '-', '') AS ward, count(*) FROM containers c
            WHERE c.dispensed_epoch IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM given g WHERE g.barcode = c.barcode AND g.site = c.site)
            GROUP BY c.site, ward"""):
        tally(site, ward, "dispensed_never_administered", unused)

    units = []
    for site in linked:
        for unit in site.units:
            measured = counts.get((site.slug, unit.ward), {})
            units.append({
                "site": site.slug, "facility": site.facility, "unit": unit.code, "ward": unit.ward,
                "matched": measured.get("matched", 0),
                "administered_without_dispense": measured.get("administered_without_dispense", 0),
                "dispensed_never_administered": measured.get("dispensed_never_administered", 0),
            })
    return {"reconciliation_by_site_unit": units}


_ONE_DOSE = 1 << 20
"""One charted dose in a packed dose entry; the bits below it number the entry's row."""


def _pharmacy_truth(connection: sqlite3.Connection) -> dict:
    # A dispense is "charted" when the eMAR holds a dose of that drug for that patient at the
    # time the pharmacy heard it was given; matching on the eMAR's own rows (not on which
    # orders the generator meant to chart) keeps this an independent count.
    connection.executescript("""
        CREATE TEMP TABLE ndc_forms (ndc10 TEXT PRIMARY KEY, ndc11 TEXT NOT NULL);
        CREATE TEMP TABLE pharmacy_units (facility TEXT, unit TEXT, ward TEXT,
                                          PRIMARY KEY (facility, ward));
    """)
    connection.executemany("INSERT INTO ndc_forms VALUES (?, ?)",
                           [(drug.ndc10, drug.ndc11) for drug in FORMULARY])
    facilities = [facility for (facility,) in connection.execute("SELECT facility FROM facilities")]
    connection.executemany("INSERT INTO pharmacy_units VALUES (?, ?, ?)",
                           [(site.facility, unit.code, unit.ward)
                            for site in SITES if site.facility in facilities for unit in site.units])
    rows: dict[tuple[str, str, str], dict] = {}

    def row(facility: str, unit: str, ndc11: str) -> dict:
        return rows.setdefault((facility, unit, ndc11), {
            "dispenses": 0, "dispensed_quantity": 0.0, "administrations": 0,
            "administered_quantity": 0.0, "inventory_dispenses": 0,
            "dispensed_never_charted": 0, "charted_never_dispensed": 0})

    # A dose is (administration time, patient, drug) packed into one int, and what is known
    # of it (doses charted, the row it counts in) into another, so a million doses fit in a
    # plain dict; grouping them in SQL would sort them, several times slower.
    drug_numbers = {drug.ndc11: number for number, drug in enumerate(FORMULARY)}
    row_numbers: dict[tuple[str, str, str], int] = {}
    numbered_rows: list[dict] = []

    def row_number(facility: str, unit: str, ndc11: str) -> int:
        number = row_numbers.get((facility, unit, ndc11))
        if number is None:
            number = row_numbers[(facility, unit, ndc11)] = len(numbered_rows)
            numbered_rows.append(row(facility, unit, ndc11))
        return number

    charted: dict[int, int] = {}
    for facility, unit, patient_id, ndc11, given, quantity in connection.execute("""
            SELECT a.facility, u.unit, a.patient_id, a.ndc11, a.given_epoch, a.dose_qty
            FROM emar.administrations a
            JOIN pharmacy_units u ON u.facility = a.facility AND u.ward = a.ward"""):
        number = row_number(facility, unit, ndc11)
        key = (given * 4_194_304 + patient_id) * 64 + drug_numbers[ndc11]
        charted[key] = charted.get(key, number) + _ONE_DOSE
        entry = numbered_rows[number]
        entry["administrations"] += 1
        entry["administered_quantity"] += quantity
    for facility, unit, patient_id, ndc11, given, quantity in connection.execute(
            "SELECT facility, unit, patient_id, ndc11, given_epoch, quantity FROM orders"
            " WHERE dispensed_epoch IS NOT NULL"):
        entry = numbered_rows[row_number(facility, unit, ndc11)]
        entry["dispenses"] += 1
        entry["dispensed_quantity"] += quantity
        key = (given * 4_194_304 + patient_id) * 64 + drug_numbers[ndc11] if given else None
        known = charted.get(key, 0)
        if known >= _ONE_DOSE:
            charted[key] = known - _ONE_DOSE
        else:
            entry["dispensed_never_charted"] += 1
    for known in charted.values():
        if known >= _ONE_DOSE:
            numbered_rows[known % _ONE_DOSE]["charted_never_dispensed"] += known // _ONE_DOSE
    for facility, unit, ndc11, count in connection.execute("""
            SELECT u.facility, u.unit, n.ndc11, count(*) FROM inventory.containers c
            JOIN ndc_forms n ON n.ndc10 = c.ndc10
            JOIN facilities f ON f.site = c.site
            JOIN pharmacy_units u ON u.facility = f.facility AND u.unit = c.unit
            WHERE c.dispensed_epoch IS NOT NULL GROUP BY u.facility, u.unit, n.ndc11"""):
        row(facility, unit, ndc11)["inventory_dispenses"] = count

    uom = {drug.ndc11: drug.dose_uom for drug in FORMULARY}
    by_unit = [
        {"site": site_by_facility(facility).slug, "facility": facility, "unit": unit,
         "ndc11": ndc11, "dose_uom": uom[ndc11], **measures}
        for (facility, unit, ndc11), measures in sorted(rows.items())
    ]
    totals: dict[str, dict[str, int]] = {}
    for entry in by_unit:
        total = totals.setdefault(entry["site"], {
            "dispenses": 0, "administrations": 0, "inventory_dispenses": 0,
            "dispensed_never_charted": 0, "charted_never_dispensed": 0})
        for measure in total:
            total[measure] += entry[measure]
    orders = dict(connection.execute("SELECT facility, count(*) FROM orders GROUP BY facility"))
    for facility, count in orders.items():
        totals.setdefault(site_by_facility(facility).slug, {})["orders"] = count
    return {"dispensing_by_site_unit_ndc11": by_unit, "totals_by_site": totals}


def filter_by_site(part: dict, site: str) -> dict:
    """Keep only the rows of one site (slug or facility code) in a system's part."""
    known = site_by_slug_or_facility(site)
    slug = known.slug if known else site
    narrowed = {}
    for key, value in part.items():
        if isinstance(value, list):
            value = [row for row in value if row["site"] == slug]
        elif key.endswith("_by_site"):
            value = {name: count for name, count in value.items() if name == slug}
        narrowed[key] = value
    return narrowed
