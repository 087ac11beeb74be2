"""System A's database: the location catalogue, containers and their movement history.

Rows are stored compactly (epoch seconds, no repeated drug names) so a million-dose world
seeds fast; the native wire shape — camelCase, nested, NDC-10 with dashes, local times with a
UTC offset — is produced here on the way out, and only here.
"""
from __future__ import annotations

import datetime as dt
import random
import re
import sqlite3
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from demo_systems.database import ReadOnlyDatabase, RecordingDatabase, insert_rows, run_statements
from demo_systems.formulary import FORMULARY, Drug
from demo_systems.sites import INVENTORY, PHARMACY, Site, site_by_slug
from demo_systems.world import CONTAINER_COLUMNS, DISPENSED, RECEIVED, STOCKED, Batch

FILE_NAME = "inventory.db"


SCHEMA = """
CREATE TABLE facilities (site TEXT PRIMARY KEY, facility TEXT NOT NULL, name TEXT NOT NULL,
                         timezone TEXT NOT NULL);
CREATE TABLE units (site TEXT NOT NULL, code TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
                    PRIMARY KEY (site, code));
CREATE TABLE cabinets (site TEXT NOT NULL, unit TEXT NOT NULL, code TEXT NOT NULL,
                       PRIMARY KEY (site, code));
CREATE TABLE drugs (ndc10 TEXT PRIMARY KEY, name TEXT NOT NULL, strength TEXT NOT NULL);
CREATE TABLE containers (id INTEGER PRIMARY KEY, site TEXT NOT NULL, barcode TEXT NOT NULL,
                         ndc10 TEXT NOT NULL, lot_number TEXT NOT NULL, expires_on TEXT NOT NULL,
                         unit TEXT NOT NULL, cabinet TEXT, status TEXT NOT NULL,
                         received_epoch INTEGER NOT NULL, stocked_epoch INTEGER,
                         dispensed_epoch INTEGER);
"""

# The change feed: one row per movement scanned while the system runs, in scanning order.
# ``sequence`` is the feed position (AUTOINCREMENT: never reused, only grows). The seeded world
# predates the feed. Its indexes serve "this site's feed after N", "where does the feed reach
# time T", and finding the running world's own containers to move on.
CHANGE_FEED = """
CREATE TABLE IF NOT EXISTS movement_log (sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                                         site TEXT NOT NULL, container_id INTEGER NOT NULL,
                                         kind TEXT NOT NULL, recorded_epoch INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS movement_log_by_site ON movement_log (site, sequence);
CREATE INDEX IF NOT EXISTS movement_log_by_time ON movement_log (site, recorded_epoch);
CREATE INDEX IF NOT EXISTS movement_log_by_kind ON movement_log (site, kind, container_id)
"""

# Built after the bulk load: one sorted build per index beats maintaining them row by row.
# Each index is paid for at seed time (about a second per million rows), so only the hub's
# real access paths get one: a barcode lookup, a site's or a unit's shelf in id order (an index
# on (site) is ordered by (site, id), so paging needs no sort), and "what moved into this unit
# between these times" for each movement type.
INDEXES = """
CREATE UNIQUE INDEX containers_by_barcode ON containers (barcode);
CREATE INDEX containers_by_site ON containers (site);
CREATE INDEX containers_by_unit ON containers (site, unit);
CREATE INDEX receipts_by_time ON containers (site, received_epoch);
CREATE INDEX stockings_by_unit_time ON containers (site, unit, stocked_epoch);
CREATE INDEX dispenses_by_unit_time ON containers (site, unit, dispensed_epoch);
CREATE INDEX dispenses_by_time ON containers (site, dispensed_epoch);
"""

# Movement type → (timestamp column, step number for ordering within one container)
_STEPS = {"receive": ("received_epoch", 0), "stock": ("stocked_epoch", 1), "dispense": ("dispensed_epoch", 2)}
_STEP_LETTERS = {"receive": "R", "stock": "S", "dispense": "D"}
MOVEMENT_TYPES = tuple(_STEPS)


# --- seeding -------------------------------------------------------------------------------

def create_schema(connection: sqlite3.Connection, sites: tuple[Site, ...],
                  formulary: tuple[Drug, ...]) -> None:
    """Create the tables and load the location catalogue and drug list."""
    run_statements(connection, SCHEMA)
    run_statements(connection, CHANGE_FEED)
    served = [site for site in sites if site.has(INVENTORY)]
    insert_rows(connection, "facilities", ("site", "facility", "name", "timezone"),
                [(s.slug, s.facility, s.name, s.timezone) for s in served])
    insert_rows(connection, "units", ("site", "code", "name", "kind"),
                [(s.slug, PHARMACY, "Central Pharmacy", "pharmacy") for s in served]
                + [(s.slug, u.code, u.name, "care") for s in served for u in s.units])
    insert_rows(connection, "cabinets", ("site", "unit", "code"),
                [(s.slug, u.code, cabinet) for s in served for u in s.units for cabinet in u.cabinets])
    insert_rows(connection, "drugs", ("ndc10", "name", "strength"),
                [(d.ndc10, d.name, d.strength) for d in formulary])


def insert_batch(connection: sqlite3.Connection, batch: Batch) -> None:
    """Append one batch of containers, movement history included."""
    insert_rows(connection, "containers", CONTAINER_COLUMNS, batch.containers)


def create_indexes(connection: sqlite3.Connection) -> None:
    """Build the query indexes once the rows are in."""
    run_statements(connection, INDEXES)


# --- serving -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContainerFilter:
    """Query-string filters of the container listing, already validated."""

    unit: str | None = None
    ndc: str | None = None
    status: str | None = None
    barcode: str | None = None


@dataclass(frozen=True)
class MovementFilter:
    """Query-string filters of the movement listing, already validated."""

    to_unit: str | None = None
    type: str | None = None
    since: float | None = None
    until: float | None = None


_CONTAINER_ID = re.compile(r"^([A-Z]{3})-C(\d{8,12})$")


class InventoryStore:
    """Access to the inventory database, answering in the native wire shape; movements
    scanned while the system runs go through ``recorder`` and its change feed."""

    def __init__(self, database: ReadOnlyDatabase, recorder: RecordingDatabase | None = None):
        self.database = database
        self.recorder = recorder
        if recorder is not None:
            recorder.prepare(CHANGE_FEED)
        self.drugs = {row["ndc10"]: row for row in database.all("SELECT * FROM drugs")}
        self.facilities = {row["site"]: row for row in database.all("SELECT * FROM facilities")}
        self.zones = {site: ZoneInfo(row["timezone"]) for site, row in self.facilities.items()}

    def locations(self, site: str) -> dict:
        """The facility → units → cabinets catalogue of a site."""
        facility = self.facilities[site]
        cabinets: dict[str, list[dict]] = {}
        for row in self.database.all("SELECT unit, code FROM cabinets WHERE site = ? ORDER BY code", (site,)):
            cabinets.setdefault(row["unit"], []).append({"code": row["code"]})
        units, pharmacy = [], None
        rows = self.database.all("SELECT code, name, kind FROM units WHERE site = ? ORDER BY rowid", (site,))
        for row in rows:
            if row["kind"] == "pharmacy":
                pharmacy = {"code": row["code"], "name": row["name"]}
            else:
                units.append({"code": row["code"], "name": row["name"],
                              "cabinets": cabinets.get(row["code"], [])})
        return {"facility": {"code": facility["facility"], "name": facility["name"],
                             "timezone": facility["timezone"]},
                "pharmacy": pharmacy, "units": units}

    def containers(self, site: str, where: ContainerFilter, *, offset: int,
                   limit: int) -> tuple[int, list[dict]]:
        """One page of a site's containers matching the filter, and how many match in all."""
        clauses, params = ["site = ?"], [site]
        for column, value in (("unit", where.unit), ("ndc10", where.ndc),
                              ("status", where.status), ("barcode", where.barcode)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        condition = " AND ".join(clauses)
        total = self.database.one(f"SELECT count(*) FROM containers WHERE {condition}", params)[0]
        rows = self.database.all(
            f"SELECT * FROM containers WHERE {condition} ORDER BY id LIMIT ? OFFSET ?",
            [*params, limit, offset])
        return total, [self._container(row) for row in rows]

    def container(self, site: str, container_id: str) -> dict | None:
        """One container by its id, if it belongs to the site."""
        row = self._container_row(site, container_id)
        return self._container(row) if row else None

    def container_movements(self, site: str, container_id: str) -> list[dict] | None:
        """A container's movement history, oldest first; None if there is no such container."""
        container = self._container_row(site, container_id)
        if container is None:
            return None
        return [self._movement(container, kind, container[column])
                for kind, (column, _) in _STEPS.items() if container[column] is not None]

    def movements(self, site: str, where: MovementFilter, *, offset: int,
                  limit: int) -> tuple[int, list[dict]]:
        """One page of a site's movements in time order, and how many match in all."""
        parts: list[tuple[str, list]] = []
        for kind, (column, step) in _STEPS.items():
            if where.type not in (None, kind):
                continue
            clauses, values = ["site = ?", f"{column} IS NOT NULL"], [site]
            if where.to_unit is not None:
                # Receipts all land in the pharmacy; stocking and dispensing land in the
                # container's unit.
                if (kind == "receive") != (where.to_unit == PHARMACY):
                    continue
                if kind != "receive":
                    clauses.append("unit = ?")
                    values.append(where.to_unit)
            for clause, value in ((f"{column} >= ?", where.since), (f"{column} < ?", where.until)):
                if value is not None:
                    clauses.append(clause)
                    values.append(value)
            parts.append((f"SELECT id, '{kind}' AS kind, {column} AS at_epoch, {step} AS step"
                           f" FROM containers WHERE {' AND '.join(clauses)}", values))
        if not parts:
            return 0, []
        total = sum(self.database.one(f"SELECT count(*) FROM ({select})", values)[0]
                    for select, values in parts)
        page = self.database.all(
            " UNION ALL ".join(select for select, _ in parts)
            + " ORDER BY at_epoch, id, step LIMIT ? OFFSET ?",
            [value for _, values in parts for value in values] + [limit, offset])
        containers = self._containers_by_id({row["id"] for row in page})
        return total, [self._movement(containers[row["id"]], row["kind"], row["at_epoch"]) for row in page]

    def changes(self, site: str, *, after_sequence: int, recorded_since: float | None,
                limit: int) -> tuple[int, list[dict]]:
        """The feed's head (latest position, 0 when empty) and up to ``limit`` movements scanned
        after feed position ``after_sequence`` (and at or after ``recorded_since``), in feed
        order, each with its ``sequence``, ``recordedAt`` and the moved ``container`` as it is
        now."""
        head = self.database.one("SELECT coalesce(max(sequence), 0) FROM movement_log"
                                 " WHERE site = ?", (site,))[0]
        if limit == 0:
            return head, []
        clauses, params = ["site = ?", "sequence > ?"], [site, after_sequence]
        if recorded_since is not None:
            clauses.append("recorded_epoch >= ?")
            params.append(recorded_since)
        rows = self.database.all(
            f"SELECT * FROM movement_log WHERE {' AND '.join(clauses)} ORDER BY sequence LIMIT ?",
            [*params, limit])
        containers = self._containers_by_id({row["container_id"] for row in rows})
        zone = self.zones[site]
        items = []
        for row in rows:
            container = containers[row["container_id"]]
            movement = self._movement(container, row["kind"], container[_STEPS[row["kind"]][0]])
            items.append({**movement, "container": self._container(container),
                          "sequence": row["sequence"],
                          "recordedAt": dt.datetime.fromtimestamp(row["recorded_epoch"], zone).isoformat()})
        return head, items

    def move_new(self, site: str, *, count: int, now: int, seed: int) -> dict:
        """Scan ``count`` new movements at ``site`` as of ``now`` (epoch seconds): in turn a new
        container received in the pharmacy, one received earlier stocked in a unit's cabinet,
        one stocked earlier dispensed to its unit. Deterministic for a seed and a feed position.
        Returns the new movement ids and feed positions."""
        units = site_by_slug(site).units

        def move(connection: sqlite3.Connection) -> dict:
            head = connection.execute("SELECT coalesce(max(sequence), 0) FROM movement_log"
                                      " WHERE site = ?", (site,)).fetchone()[0]
            rand = random.Random(f"{seed}/live/{INVENTORY}/{site}/{head}").random
            ids, sequences = [], []
            for number in range(count):
                kind = MOVEMENT_TYPES[(head + number) % 3]
                container_id = None
                if kind != "receive":
                    container_id = self._running_world_container(
                        connection, site, RECEIVED if kind == "stock" else STOCKED, before=now)
                if container_id is None:
                    kind, container_id = "receive", self._receive(connection, site, rand, now)
                elif kind == "stock":
                    unit = units[int(rand() * len(units))]
                    connection.execute(
                        "UPDATE containers SET unit = ?, cabinet = ?, status = ?, stocked_epoch = ?"
                        " WHERE id = ?", (unit.code, unit.cabinets[int(rand() * len(unit.cabinets))],
                                          STOCKED, now, container_id))
                else:
                    connection.execute("UPDATE containers SET status = ?, dispensed_epoch = ?"
                                       " WHERE id = ?", (DISPENSED, now, container_id))
                sequences.append(connection.execute(
                    "INSERT INTO movement_log (site, container_id, kind, recorded_epoch)"
                    " VALUES (?, ?, ?, ?)", (site, container_id, kind, now)).lastrowid)
                facility = self.facilities[site]["facility"]
                ids.append(f"{facility}-C{container_id:08d}-{_STEP_LETTERS[kind]}")
            return {"ids": ids, "first_sequence": sequences[0] if sequences else None,
                    "head_sequence": sequences[-1] if sequences else head}

        return self.recorder.write(move)

    @staticmethod
    def _running_world_container(connection: sqlite3.Connection, site: str, status: str, *,
                                 before: int) -> int | None:
        # Only containers the running world received move on: the seeded world stays as seeded.
        # A container moves at most once a second: a movement is one thing that happened to one
        # container at one time.
        row = connection.execute(
            "SELECT c.id FROM movement_log l JOIN containers c ON c.id = l.container_id"
            " WHERE l.site = ? AND l.kind = 'receive' AND c.status = ?"
            " AND coalesce(c.stocked_epoch, c.received_epoch) < ? ORDER BY l.container_id"
            " LIMIT 1", (site, status, before)).fetchone()
        return row[0] if row else None

    def _receive(self, connection: sqlite3.Connection, site: str, rand, now: int) -> int:
        container_id = connection.execute("SELECT coalesce(max(id), 0) + 1 FROM containers").fetchone()[0]
        drug = FORMULARY[int(rand() * len(FORMULARY))]
        expires = dt.date.fromtimestamp(now) + dt.timedelta(days=30 + int(rand() * 690))
        connection.execute(
            f"INSERT INTO containers ({', '.join(CONTAINER_COLUMNS)})"
            f" VALUES ({', '.join('?' for _ in CONTAINER_COLUMNS)})",
            (container_id, site, f"30{container_id:010d}", drug.ndc10,
             f"L{10_000 + int(rand() * 90_000)}", expires.isoformat(), PHARMACY, None, RECEIVED,
             now, None, None))
        return container_id

    # --- native shape ---

    def _container_row(self, site: str, container_id: str) -> sqlite3.Row | None:
        match = _CONTAINER_ID.match(container_id)
        if not match or match.group(1) != self.facilities[site]["facility"]:
            return None
        return self.database.one("SELECT * FROM containers WHERE id = ? AND site = ?",
                                 (int(match.group(2)), site))

    def _containers_by_id(self, ids: set[int]) -> dict[int, sqlite3.Row]:
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        return {row["id"]: row for row in self.database.all(
            f"SELECT * FROM containers WHERE id IN ({marks})", list(ids))}

    def _container_id(self, row: sqlite3.Row) -> str:
        return f"{self.facilities[row['site']]['facility']}-C{row['id']:08d}"

    def _container(self, row: sqlite3.Row) -> dict:
        drug = self.drugs[row["ndc10"]]
        return {
            "containerId": self._container_id(row),
            "barcode": row["barcode"],
            "drug": {"ndc": row["ndc10"], "name": drug["name"], "strength": drug["strength"]},
            "lotNumber": row["lot_number"],
            "expiresOn": row["expires_on"],
            "location": {"facility": self.facilities[row["site"]]["facility"],
                         "unit": row["unit"], "cabinet": row["cabinet"]},
            "status": row["status"],
        }

    def _movement(self, container: sqlite3.Row, kind: str, at_epoch: int) -> dict:
        pharmacy = {"unit": PHARMACY, "cabinet": None}
        cabinet = {"unit": container["unit"], "cabinet": container["cabinet"]}
        source, destination = {
            "receive": (None, pharmacy),
            "stock": (pharmacy, cabinet),
            "dispense": (cabinet, {"unit": container["unit"], "cabinet": None}),
        }[kind]
        return {
            "movementId": f"{self._container_id(container)}-{_STEP_LETTERS[kind]}",
            "containerId": self._container_id(container),
            "barcode": container["barcode"],
            "type": kind,
            "at": dt.datetime.fromtimestamp(at_epoch, self.zones[container["site"]]).isoformat(),
            "from": source,
            "to": destination,
        }

