"""The synthetic world behind the demo systems: deterministic, varied, and linked as promised."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sqlite3
import stat
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo_systems import ground_truth
from demo_systems.formulary import FORMULARY, LAYOUTS, ndc10_to_ndc11
from demo_systems.seeding import seed
from demo_systems.sites import ADMINISTRATION, INVENTORY, SITES, site_by_facility, site_by_slug
from demo_systems.world import REFERENCE_END, WINDOW_DAYS, generate

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def world_digest(seed_value: int, administrations: int) -> str:
    """A hash of every row a world streams, patients included."""
    world = generate(seed_value, administrations, batch_size=500)
    digest = hashlib.sha256()
    for patient in world.patients:
        digest.update(repr(patient.row()).encode())
    for batch in world.batches():
        digest.update(repr(batch.administrations).encode())
        digest.update(repr(batch.containers).encode())
    return digest.hexdigest()


def all_rows(database: Path, table: str) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


def test_same_seed_generates_the_same_world():
    assert world_digest(7, 2_000) == world_digest(7, 2_000)


def test_different_seeds_generate_different_worlds():
    assert world_digest(7, 2_000) != world_digest(8, 2_000)


def test_world_streams_exactly_the_requested_administrations():
    world = generate(3, 1_234, batch_size=100)
    assert sum(len(batch.administrations) for batch in world.batches()) == 1_234
    assert sum(world.administrations_per_site().values()) == 1_234


def test_formulary_covers_all_three_ndc10_layouts_and_pads_to_ndc11():
    assert len(FORMULARY) == 40
    assert {drug.layout for drug in FORMULARY} == set(LAYOUTS)
    assert len({drug.ndc11 for drug in FORMULARY}) == len(FORMULARY)
    for drug in FORMULARY:
        assert re.fullmatch(r"\d{4,5}-\d{3,4}-\d{1,2}", drug.ndc10)
        assert re.fullmatch(r"\d{11}", drug.ndc11)
        assert drug.dose_uom in {"mg", "mL", "units", "mcg"}
        assert set(drug.routes) <= {"IV", "PO", "SC", "IM"}


@pytest.mark.parametrize("ndc10, ndc11", [
    ("0409-4888-02", "00409488802"),   # 4-4-2: pad the labeler
    ("12345-678-90", "12345067890"),   # 5-3-2: pad the product
    ("12345-6789-1", "12345678901"),   # 5-4-1: pad the package
])
def test_ndc10_converts_to_the_standard_5_4_2_ndc11(ndc10, ndc11):
    assert ndc10_to_ndc11(ndc10) == ndc11


@given(st.sampled_from(LAYOUTS), st.integers(min_value=0, max_value=10**11 - 1))
def test_every_ndc10_layout_pads_to_eleven_digits_keeping_each_segment(layout, number):
    widths = [int(width) for width in layout.split("-")]
    digits = f"{number:011d}"[-sum(widths):]
    segments = [digits[:widths[0]], digits[widths[0]:widths[0] + widths[1]], digits[widths[0] + widths[1]:]]
    ndc11 = ndc10_to_ndc11("-".join(segments))
    assert len(ndc11) == 11
    assert (int(ndc11[:5]), int(ndc11[5:9]), int(ndc11[9:])) == tuple(int(segment) for segment in segments)


def test_sites_are_the_three_fixed_tenants_with_their_systems():
    assert [(s.slug, s.facility, s.timezone, set(s.systems)) for s in SITES] == [
        ("north-general", "NGH", "America/New_York", {INVENTORY, ADMINISTRATION}),
        ("river-valley", "RVH", "America/Chicago", {INVENTORY, ADMINISTRATION}),
        ("lakeside-clinic", "LSC", "America/Denver", {ADMINISTRATION}),
    ]


def test_every_site_has_at_least_20_units_with_one_or_two_cabinets_each():
    for site in SITES:
        assert len(site.units) >= 20, site.slug
        for unit in site.units:
            assert re.fullmatch(r"[A-Z]+-\d+", unit.code)
            assert unit.ward == unit.code.replace("-", "")
            assert 1 <= len(unit.cabinets) <= 2
            assert all(cabinet.startswith(unit.code + "-CAB") for cabinet in unit.cabinets)
    assert len({tuple(unit.code for unit in site.units) for site in SITES}) == len(SITES)


def test_patients_are_synthetic_with_mrns_and_some_aged_ninety_or_more():
    world = generate(11, 3_000)
    assert len(world.patients) >= 120
    assert len({patient.mrn for patient in world.patients}) == len(world.patients)
    assert all(re.fullmatch(r"MRN\d{8}", patient.mrn) for patient in world.patients)
    reference = REFERENCE_END.date()
    ages = [(reference - dt.date.fromisoformat(patient.birth_date)).days // 365.25
            for patient in world.patients]
    assert any(age >= 90 for age in ages)
    assert min(ages) >= 0


def test_small_worlds_still_have_at_least_sixty_patients():
    assert len(generate(1, 10).patients) >= 60


def test_administrations_fall_in_the_fixed_window_before_the_reference_date():
    world = generate(5, 2_000)
    end = int(REFERENCE_END.timestamp())
    given = [row[7] for batch in world.batches() for row in batch.administrations]
    assert min(given) >= end - WINDOW_DAYS * 86_400
    assert max(given) < end


def test_nurse_ids_and_notes_look_like_real_ones_some_naming_the_patient():
    world = generate(5, 2_000)
    names = {patient.id: patient for patient in world.patients}
    rows = [row for batch in world.batches() for row in batch.administrations]
    assert all(re.fullmatch(r"RN\d{5}", row[8]) for row in rows)
    notes = [(row[9], names[row[3]]) for row in rows if row[9]]
    assert notes
    assert any(patient.last in note for note, patient in notes)


def test_seeded_world_reaches_every_unit_of_every_site(demo_data_dir):
    with sqlite3.connect(demo_data_dir / "administration.db") as emar:
        wards = set(emar.execute("SELECT DISTINCT facility, ward FROM administrations"))
    assert wards == {(site.facility, unit.ward) for site in SITES for unit in site.units}


def test_link_ratios_are_about_two_percent_unmatched_and_five_percent_never_administered(demo_data_dir):
    truth = json.loads((demo_data_dir / "ground-truth.json").read_text())[INVENTORY]
    rows = truth["reconciliation_by_site_unit"]
    matched = sum(row["matched"] for row in rows)
    orphans = sum(row["administered_without_dispense"] for row in rows)
    unused = sum(row["dispensed_never_administered"] for row in rows)
    assert 0.01 <= orphans / (matched + orphans) <= 0.035
    assert 0.03 <= unused / (matched + unused) <= 0.075
    assert {row["site"] for row in rows} == {"north-general", "river-valley"}


def test_reconciliation_truth_agrees_with_an_independent_recount_of_both_databases(demo_data_dir):
    dispensed_to: dict[tuple[str, str], set[str]] = defaultdict(set)
    with sqlite3.connect(demo_data_dir / "inventory.db") as inventory:
        for site, unit, barcode in inventory.execute(
                "SELECT site, unit, barcode FROM containers WHERE dispensed_epoch IS NOT NULL"):
            dispensed_to[(site, unit)].add(barcode)
    given_in: dict[tuple[str, str], list[str]] = defaultdict(list)
    with sqlite3.connect(demo_data_dir / "administration.db") as emar:
        for facility, ward, barcode in emar.execute(
                "SELECT facility, ward, container_barcode FROM administrations"):
            site = site_by_facility(facility)
            if site.has(INVENTORY):
                given_in[(site.slug, site.unit_for_ward(ward).code)].append(barcode)
    administered = {barcode for barcodes in given_in.values() for barcode in barcodes}

    truth = json.loads((demo_data_dir / "ground-truth.json").read_text())[INVENTORY]
    for row in truth["reconciliation_by_site_unit"]:
        key = (row["site"], row["unit"])
        dispensed = dispensed_to[key]
        given = given_in[key]
        assert row["matched"] == sum(barcode in dispensed for barcode in given), key
        assert row["administered_without_dispense"] == sum(barcode not in dispensed for barcode in given), key
        assert row["dispensed_never_administered"] == len(dispensed - administered), key
        assert row["ward"] == site_by_slug(row["site"]).unit_for_ward(row["ward"]).ward


def test_administration_truth_agrees_with_an_independent_recount(demo_data_dir):
    counts: Counter = Counter()
    doses: Counter = Counter()
    with sqlite3.connect(demo_data_dir / "administration.db") as emar:
        for facility, ward, ndc11, given, dose in emar.execute(
                "SELECT facility, ward, ndc11, given_epoch, dose_qty FROM administrations"):
            day = dt.datetime.fromtimestamp(given, dt.UTC).date().isoformat()
            counts[(facility, ward, ndc11, day)] += 1
            doses[(facility, ward, ndc11, day)] += dose
    truth = json.loads((demo_data_dir / "ground-truth.json").read_text())[ADMINISTRATION]
    by_date = {(r["facility"], r["ward"], r["ndc11"], r["date"]): r for r in truth["by_site_ward_ndc11_date"]}
    assert set(by_date) == set(counts)
    for key, row in by_date.items():
        assert (row["count"], row["dose_total"]) == (counts[key], doses[key])
    assert sum(r["count"] for r in truth["by_site_ndc11_hour"]) == sum(counts.values())
    assert sum(truth["administrations_by_site"].values()) == sum(counts.values())


def test_key_files_are_owner_only_one_per_site_and_system(demo_data_dir, demo_manifest):
    key_files = [Path(system["key_file"]) for entry in demo_manifest["sites"]
                 for system in entry["systems"].values() if "key_file" in system]
    assert len(key_files) == 5
    assert {path.name for path in key_files} == {
        "inventory-north-general.key", "inventory-river-valley.key",
        "administration-north-general.key", "administration-river-valley.key",
        "administration-lakeside-clinic.key"}
    for path in key_files:
        assert path.is_absolute()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len({path.read_text() for path in key_files}) == 5


def test_manifest_tells_the_hub_each_sites_systems_and_paths(demo_manifest):
    lakeside = next(entry for entry in demo_manifest["sites"] if entry["site"] == "lakeside-clinic")
    north = next(entry for entry in demo_manifest["sites"] if entry["site"] == "north-general")
    assert set(lakeside["systems"]) == {ADMINISTRATION}
    assert north["name"] == "North General Hospital"
    assert north["timezone"] == "America/New_York"
    assert north["systems"][INVENTORY]["path"] == "/api/v2/sites/north-general"
    assert north["systems"][ADMINISTRATION]["path"] == "/emar/v1/facilities/NGH"
    assert north["systems"]["pharmacy"] == {
        "options": {"senders": [{"application": "DEMO-PHARMACY", "facility": "NGH"}]}}


def test_reseeding_replaces_the_world_and_the_same_seed_reproduces_it(tmp_path):
    seed(data_dir=tmp_path / "data", seed=99, administrations=800, keys_out=tmp_path / "keys")
    first = all_rows(tmp_path / "data" / "administration.db", "administrations")
    first_containers = all_rows(tmp_path / "data" / "inventory.db", "containers")
    seed(data_dir=tmp_path / "data", seed=99, administrations=300, keys_out=tmp_path / "keys")
    assert len(all_rows(tmp_path / "data" / "administration.db", "administrations")) == 300
    seed(data_dir=tmp_path / "data", seed=99, administrations=800, keys_out=tmp_path / "keys")
    assert all_rows(tmp_path / "data" / "administration.db", "administrations") == first
    assert all_rows(tmp_path / "data" / "inventory.db", "containers") == first_containers
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == [
        "administration.db", "ground-truth.json", "inventory.db", "manifest.json",
        "pharmacy.db"]


def test_ground_truth_can_be_narrowed_to_one_site(demo_data_dir):
    part = ground_truth.load_part(demo_data_dir / ground_truth.FILE_NAME, ADMINISTRATION)
    narrowed = ground_truth.filter_by_site(part, "LSC")
    assert set(narrowed["administrations_by_site"]) == {"lakeside-clinic"}
    assert {row["site"] for row in narrowed["by_site_ward_ndc11_date"]} == {"lakeside-clinic"}


def test_seed_command_prints_a_one_line_summary(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "demo_systems", "seed", "--data-dir", str(tmp_path / "data"),
         "--seed", "3", "--administrations", "300", "--keys-out", str(tmp_path / "keys")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert re.search(r"300 administrations.* in \d+\.\ds$", lines[0])
    assert (tmp_path / "keys" / "inventory-north-general.key").exists()
