"""The numbers the hub's jobs are checked against, computed by SQL from the seeded databases.

Written once at seed time to ``<data-dir>/ground-truth.json`` because the inventory server can
see only its own database at runtime, yet reconciliation truth needs both. Each server then
serves its own part.

* ``administration``: counts and dose totals per site × ward × NDC-11 × UTC date, and per
  site × NDC-11 × UTC hour (the hourly view drops the ward to stay small at a million doses).
* ``inventory``: per site × unit of the sites running both systems, ``matched`` (doses whose
  barcode was dispensed to that unit), ``administered_without_dispense`` and
  ``dispensed_never_administered``.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

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
