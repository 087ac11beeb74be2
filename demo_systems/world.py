"""A deterministic synthetic world: patients, administrations, and containers with their movements.

Everything is derived from the seed through ``random.Random`` streams named after what they
produce (``"{seed}/patients"``, ``"{seed}/north-general"``), so the same seed always yields the
same world and one site's stream does not shift when another site changes. Nothing reads the
clock: the window ends at :data:`REFERENCE_END`.

Rows are plain tuples in the column order of the two systems' tables (see :data:`ADMINISTRATION_COLUMNS`,
:data:`CONTAINER_COLUMNS` and :data:`PATIENT_COLUMNS`) and arrive in batches, so a million
administrations stream straight into SQLite without ever being held in memory at once.

Linking, for sites that run both systems (the reconciliation ground truth):

* every container carries a barcode; about 98% of administrations reference the barcode of a
  container dispensed to the same unit shortly before the dose was given;
* about 2% reference a barcode with no dispense record: half of them a container that was
  stocked in the unit's cabinet but never dispensed, half a barcode the inventory never saw;
* about 5% of the containers dispensed to a unit are never administered from;
* a few percent of containers stop early, still in the pharmacy or in a cabinet.

No identifier here belongs to a real person: names come from invented lists, MRNs and nurse ids
are random digits.
"""
from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from demo_systems.formulary import FORMULARY, Drug
from demo_systems.sites import ADMINISTRATION, INVENTORY, PHARMACY, SITES, Site, Unit

REFERENCE_END = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
"""Every event in the world happens before this instant."""
WINDOW_DAYS = 14
"""Administrations fall in the last ``WINDOW_DAYS`` days before :data:`REFERENCE_END`."""

WINDOW_END = int(REFERENCE_END.timestamp())
WINDOW_START = WINDOW_END - WINDOW_DAYS * 86_400

ORPHAN_RATE = 0.02
"""Share of administrations (at sites with both systems) whose barcode has no dispense record."""
UNUSED_DISPENSE_RATE = 0.05
"""Share of containers dispensed to a unit that are never administered from."""
PHARMACY_ONLY_RATE = 0.02
CABINET_ONLY_RATE = 0.02

PATIENT_COLUMNS = ("id", "facility", "mrn", "full_name", "birth_date")
ADMINISTRATION_COLUMNS = ("id", "facility", "ward", "patient_id", "ndc11", "dose_qty", "route",
                          "given_epoch", "nurse_id", "note", "container_barcode")
CONTAINER_COLUMNS = ("id", "site", "barcode", "ndc10", "lot_number", "expires_on", "unit",
                     "cabinet", "status", "received_epoch", "stocked_epoch", "dispensed_epoch")
"""A container row carries its whole movement history: the lifecycle is the fixed chain
pharmacy received → cabinet stocked → unit dispensed, so one timestamp per step (None where the
container stopped early) holds it in a third of the rows a movement table would need."""

RECEIVED, STOCKED, DISPENSED = "received", "stocked", "dispensed"
CONTAINER_STATUSES = (RECEIVED, STOCKED, DISPENSED)
"""Where a container's journey stopped: in the pharmacy, in a unit's cabinet, or dispensed."""

_FIRST_NAMES = (
    "Aldric", "Brisa", "Corvin", "Delphine", "Emrys", "Fenna", "Galen", "Hollis", "Isolde",
    "Jory", "Kestrel", "Liora", "Marek", "Nerys", "Orrin", "Perrin", "Quilla", "Rowan", "Sabine",
    "Tamsin", "Ulric", "Vesna", "Wren", "Xanthe", "Yorick", "Zinnia", "Anselm", "Bryony",
    "Caspian", "Dorothea", "Evander", "Florian", "Ginevra", "Hesper", "Ivo", "Juniper",
)
_LAST_NAMES = (
    "Ashcombe", "Blackthorne", "Cranwell", "Dunmore", "Elderberry", "Fairweather", "Glenhollow",
    "Hartwick", "Ivesdale", "Juniperfield", "Kettleby", "Larkspur", "Marchbanks", "Netherby",
    "Oakenshaw", "Pennywhistle", "Quenby", "Rookwood", "Silverdale", "Thistlewood", "Underhay",
    "Vantongeren", "Wexcombe", "Yarborough", "Zellweger", "Amberley", "Brackenridge", "Coldwater",
    "Dovecote", "Emberton", "Foxhollow", "Greymantle", "Hawthorne", "Inglewood", "Kingsmere",
)
_PLAIN_NOTES = (
    "Given as ordered.",
    "Tolerated well, no adverse reaction observed.",
    "Given with meal.",
    "Injection site clean, no redness.",
    "Pain reassessed 30 minutes after dose.",
    "Held briefly for blood pressure check, then given.",
    "Double-checked with second RN.",
    "Flushed line before and after.",
)
_NAMED_NOTES = (
    "{full_name} tolerated the dose well.",
    "Explained purpose of medication to {full_name}.",
    "{full_name} requested dose, pain 6/10 before.",
    "Pt {last} asleep, woken for dose.",
    "{first} refused first attempt, accepted on second.",
)


@dataclass
class Batch:
    """A slice of the world ready for ``executemany``: rows for both systems' tables."""

    administrations: list[tuple] = field(default_factory=list)
    containers: list[tuple] = field(default_factory=list)


@dataclass(frozen=True)
class Patient:
    """A synthetic patient staying on one unit of one site."""

    id: int
    site: Site
    unit: Unit
    mrn: str
    first: str
    last: str
    birth_date: str

    @property
    def full_name(self) -> str:
        """Name as the eMAR prints it."""
        return f"{self.first} {self.last}"

    def row(self) -> tuple:
        """The patient as a row of :data:`PATIENT_COLUMNS`."""
        return (self.id, self.site.facility, self.mrn, self.full_name, self.birth_date)


@dataclass(frozen=True)
class Lot:
    """A manufacturing lot of one drug."""

    number: str
    expires_on: str


class World:
    """The synthetic world for one seed; iterate :meth:`batches` to stream its events."""

    def __init__(self, seed: int, administrations: int, *, batch_size: int = 20_000):
        if administrations < 0:
            raise ValueError("administrations must not be negative")
        self.seed = seed
        self.administrations = administrations
        self.batch_size = batch_size
        self.sites = SITES
        self.formulary = FORMULARY
        self.patients = self._admit_patients()
        self.lots = self._make_lots()
        self.nurses = self._staff_nurses()

    # --- fixed populations -------------------------------------------------------------

    def administrations_per_site(self) -> dict[str, int]:
        """How the administration count is split over the sites that run the eMAR."""
        sites = [site for site in self.sites if site.has(ADMINISTRATION)]
        total_share = sum(site.administration_share for site in sites)
        counts = {site.slug: self.administrations * site.administration_share // total_share
                  for site in sites}
        counts[sites[0].slug] += self.administrations - sum(counts.values())
        return counts

    def _admit_patients(self) -> list[Patient]:
        chooser = random.Random(f"{self.seed}/patients")
        sites = [site for site in self.sites if site.has(ADMINISTRATION)]
        total = max(60, self.administrations // 25)
        total_share = sum(site.administration_share for site in sites)
        per_site = [max(len(site.units), total * site.administration_share // total_share)
                    for site in sites]
        mrns = chooser.sample(range(10_000_000, 100_000_000), sum(per_site))
        reference = REFERENCE_END.date()
        patients: list[Patient] = []
        for site, count in zip(sites, per_site, strict=True):
            for number in range(count):
                # Round-robin over units so every unit has patients to give doses to.
                unit = site.units[number % len(site.units)]
                age_days = _age_in_days(chooser, unit)
                patients.append(Patient(
                    id=len(patients) + 1,
                    site=site,
                    unit=unit,
                    mrn=f"MRN{mrns[len(patients)]:08d}",
                    first=chooser.choice(_FIRST_NAMES),
                    last=chooser.choice(_LAST_NAMES),
                    birth_date=(reference - dt.timedelta(days=age_days)).isoformat(),
                ))
        return patients

    def _make_lots(self) -> dict[str, list[Lot]]:
        chooser = random.Random(f"{self.seed}/lots")
        reference = REFERENCE_END.date()
        lots = {}
        for drug in self.formulary:
            lots[drug.ndc10] = [
                Lot(number=f"{chooser.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{chooser.randrange(10_000, 100_000)}",
                    expires_on=(reference + dt.timedelta(days=chooser.randrange(30, 720))).isoformat())
                for _ in range(4)
            ]
        return lots

    def _staff_nurses(self) -> dict[str, list[str]]:
        chooser = random.Random(f"{self.seed}/nurses")
        numbers = chooser.sample(range(10_000, 100_000), 150 * len(self.sites))
        return {site.slug: [f"RN{n:05d}" for n in numbers[i * 150:(i + 1) * 150]]
                for i, site in enumerate(self.sites)}

    # --- the event stream ---------------------------------------------------------------

    def batches(self) -> Iterator[Batch]:
        """Stream the world's rows in batches; the same seed always streams the same rows."""
        ids = _IdBook()
        counts = self.administrations_per_site()
        for site in self.sites:
            if site.has(ADMINISTRATION):
                yield from self._site_batches(site, counts[site.slug], ids)

    def _site_batches(self, site: Site, count: int, ids: _IdBook) -> Iterator[Batch]:
        chooser = random.Random(f"{self.seed}/{site.slug}")
        rand = chooser.random
        given_times = sorted(WINDOW_START + int(rand() * (WINDOW_END - WINDOW_START))
                             for _ in range(count))
        # Slot tables turn a weighted choice into one multiply and one index, which matters
        # at a million rows.
        unit_slots = [unit for unit in site.units for _ in range(unit.volume)]
        patients_on: dict[str, list[Patient]] = {unit.code: [] for unit in site.units}
        for patient in self.patients:
            if patient.site is site:
                patients_on[patient.unit.code].append(patient)
        nurses = self.nurses[site.slug]
        formulary = self.formulary
        has_inventory = site.has(INVENTORY)
        facility = site.facility
        link = _Linker(site, ids, chooser, self.lots, formulary)

        batch = Batch()
        administrations = batch.administrations
        for given in given_times:
            unit = unit_slots[int(rand() * len(unit_slots))]
            residents = patients_on[unit.code]
            patient = residents[int(rand() * len(residents))]
            drug = formulary[int(rand() * len(formulary))]
            dose = drug.doses[int(rand() * len(drug.doses))]
            route = drug.routes[int(rand() * len(drug.routes))]
            nurse = nurses[int(rand() * len(nurses))]
            roll = rand()
            if roll < 0.6:
                note = None
            elif roll < 0.85:
                note = _PLAIN_NOTES[int(rand() * len(_PLAIN_NOTES))]
            else:
                note = _NAMED_NOTES[int(rand() * len(_NAMED_NOTES))].format(
                    full_name=patient.full_name, first=patient.first, last=patient.last)
            if has_inventory:
                barcode = link.barcode_for_administration(batch, unit, drug, given)
            else:
                barcode = f"32{ids.next_scan():010d}"
            administrations.append((ids.next_administration(), facility, unit.ward, patient.id,
                                    drug.ndc11, dose, route, given, nurse, note, barcode))
            if len(administrations) >= self.batch_size:
                yield batch
                batch = Batch()
                administrations = batch.administrations
        if administrations or batch.containers:
            yield batch


class _IdBook:
    """Hands out row ids; one book per stream so ids are dense and deterministic."""

    def __init__(self) -> None:
        self.administration = 0
        self.container = 0
        self.scan = 0

    def next_administration(self) -> int:
        self.administration += 1
        return self.administration

    def next_container(self) -> int:
        self.container += 1
        return self.container

    def next_scan(self) -> int:
        self.scan += 1
        return self.scan


class _Linker:
    """Creates the containers and movements behind each administration at a two-system site."""

    def __init__(self, site: Site, ids: _IdBook, chooser: random.Random,
                 lots: dict[str, list[Lot]], formulary: tuple[Drug, ...]):
        self.site = site
        self.ids = ids
        self.rand = chooser.random
        self.lots = lots
        self.formulary = formulary
        # 5% of dispensed containers unused means one unused per 19 used.
        self.unused_per_used = UNUSED_DISPENSE_RATE / (1 - UNUSED_DISPENSE_RATE)

    def barcode_for_administration(self, batch: Batch, unit: Unit, drug: Drug, given: int) -> str:
        """Create the inventory history behind one dose and return the barcode the nurse scanned."""
        rand = self.rand
        roll = rand()
        if roll < ORPHAN_RATE / 2:
            barcode = self._container(batch, unit, drug, given - 1800 - int(rand() * 86_400), STOCKED)
        elif roll < ORPHAN_RATE:
            barcode = f"31{self.ids.next_scan():010d}"
        else:
            barcode = self._container(batch, unit, drug, given - 300 - int(rand() * 5_100), DISPENSED)
            if rand() < self.unused_per_used:
                spare = self.formulary[int(rand() * len(self.formulary))]
                self._container(batch, unit, spare, given - int(rand() * 21_600), DISPENSED)
        roll = rand()
        if roll < PHARMACY_ONLY_RATE:
            spare = self.formulary[int(rand() * len(self.formulary))]
            self._container(batch, unit, spare, given - int(rand() * 86_400), RECEIVED)
        elif roll < PHARMACY_ONLY_RATE + CABINET_ONLY_RATE:
            spare = self.formulary[int(rand() * len(self.formulary))]
            self._container(batch, unit, spare, given - int(rand() * 86_400), STOCKED)
        return barcode

    def _container(self, batch: Batch, unit: Unit, drug: Drug, last_move: int, status: str) -> str:
        """Add one container whose last movement happens at ``last_move``; return its barcode."""
        rand = self.rand
        container_id = self.ids.next_container()
        barcode = f"30{container_id:010d}"
        lots = self.lots[drug.ndc10]
        lot = lots[int(rand() * len(lots))]
        if status == RECEIVED:
            batch.containers.append((container_id, self.site.slug, barcode, drug.ndc10, lot.number,
                                     lot.expires_on, PHARMACY, None, status, last_move, None, None))
            return barcode
        cabinet = unit.cabinets[int(rand() * len(unit.cabinets))]
        if status == DISPENSED:
            dispensed = last_move
            stocked = dispensed - 7_200 - int(rand() * 252_000)
        else:
            dispensed = None
            stocked = last_move
        received = stocked - 3_600 - int(rand() * 432_000)
        batch.containers.append((container_id, self.site.slug, barcode, drug.ndc10, lot.number,
                                 lot.expires_on, unit.code, cabinet, status,
                                 received, stocked, dispensed))
        return barcode


def _age_in_days(chooser: random.Random, unit: Unit) -> int:
    """A plausible age for a patient on this unit; some adults are 90 or older."""
    if unit.code.startswith("NICU"):
        # Born before the window opens, so no dose predates its patient.
        return chooser.randrange(WINDOW_DAYS + 1, WINDOW_DAYS + 60)
    if unit.code.startswith("PEDS"):
        return chooser.randrange(365, 17 * 365)
    if chooser.random() < 0.07:
        return chooser.randrange(90 * 365 + 30, 104 * 365)
    return chooser.randrange(18 * 365 + 5, 89 * 365)


def generate(seed: int, administrations: int, *, batch_size: int = 20_000) -> World:
    """Build the deterministic world for ``seed`` with about ``administrations`` doses given."""
    return World(seed, administrations, batch_size=batch_size)
