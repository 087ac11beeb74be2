"""Merging unit partials into job results, small-count suppression, and the PHI check every
result passes before it is stored (``app/jobs/results.py``, ``app/phi/boundary.py``): pure
functions, no services."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from app.jobs.results import (
    MERGERS,
    merge_administration_counts,
    merge_dispense_reconciliation,
    merge_dose_reconciliation,
)
from app.phi.boundary import UnsafeResult, assert_phi_free

WINDOW = {"since": "2026-11-06T00:00:00Z", "until": "2026-11-20T00:00:00Z"}
HOUR = "2026-11-07T08:00:00Z"
MORPHINE, HEPARIN = "00409189001", "63323054701"


# --- factories of unit partials, shaped as app.jobs.work returns them ----------------------

def group(unit="ICU-1", medication=MORPHINE, hour=None, *, count=1, dose_total=2.0,
          dose_unit="mg") -> dict:
    return {"unit": unit, "medication": medication, "hour": hour, "dose_unit": dose_unit,
            "count": count, "dose_total": dose_total}


def counts_partial(unit="ICU-1", *groups: dict, records: int | None = None) -> dict:
    return {"unit": unit, "groups": list(groups),
            "records": sum(g["count"] for g in groups) if records is None else records}


def reconciliation_partial(unit="ICU-1", *, dispensed=10, matched=8, without_dispense=1,
                           never_administered=2) -> dict:
    return {"unit": unit, "dispensed": dispensed, "matched": matched,
            "administered_without_dispense": without_dispense,
            "dispensed_never_administered": never_administered}


def dispensing_partial(unit="ICU-1", *medications: dict) -> dict:
    return {"unit": unit, "medications": list(medications)}


def dispensing(medication=MORPHINE, *, pharmacy=10, charted=10, inventory=10, dose=2.0,
               dose_unit="mg") -> dict:
    return {"medication": medication, "dose_unit": dose_unit, "pharmacy_dispenses": pharmacy,
            "pharmacy_quantity": pharmacy * dose, "administrations": charted,
            "administered_quantity": charted * dose, "inventory_dispenses": inventory}


def counts_params(group_by=("unit", "medication"), **extra) -> dict:
    return {"window": WINDOW, "group_by": list(group_by), **extra}


# --- administration counts ------------------------------------------------------------------

def test_counts_of_the_same_group_in_several_partials_add_up():
    # Grouped by medication only: the units' groups of one drug are one group of the job.
    partials = [
        counts_partial("ICU-1", group(None, MORPHINE, count=3, dose_total=6.0),
                       group(None, HEPARIN, count=2, dose_total=10000.0, dose_unit="unit")),
        counts_partial("ED-1", group(None, MORPHINE, count=4, dose_total=8.5)),
        counts_partial("PEDS-1", group(None, MORPHINE, count=1, dose_total=0.25,
                                       dose_unit="mg")),
    ]

    merged = merge_administration_counts(partials, params=counts_params(["medication"]))

    assert merged["type"] == "administration_counts" and merged["group_by"] == ["medication"]
    assert merged["records"] == 10
    by_medication = {row["medication"]: row for row in merged["groups"]}
    assert by_medication[MORPHINE] == {"medication": MORPHINE, "count": 8, "dose_total": 14.75,
                                       "dose_unit": "mg"}
    assert by_medication[HEPARIN] == {"medication": HEPARIN, "count": 2,
                                      "dose_total": 10000.0, "dose_unit": "unit"}
    assert "suppressed_below" not in merged


def test_groups_stay_apart_by_unit_medication_hour_and_dose_unit():
    partials = [
        counts_partial("ICU-1", group("ICU-1", MORPHINE, HOUR, count=2),
                       group("ICU-1", MORPHINE, HOUR, count=1, dose_unit="mcg"),
                       group("ICU-1", MORPHINE, "2026-11-07T09:00:00Z", count=5)),
        counts_partial("ICU-2", group("ICU-2", MORPHINE, HOUR, count=7)),
    ]

    merged = merge_administration_counts(
        partials, params=counts_params(["unit", "medication", "hour"]))

    got = {(row["unit"], row["medication"], row["hour"], row["dose_unit"]): row["count"]
           for row in merged["groups"]}
    assert got == {("ICU-1", MORPHINE, HOUR, "mg"): 2, ("ICU-1", MORPHINE, HOUR, "mcg"): 1,
                   ("ICU-1", MORPHINE, "2026-11-07T09:00:00Z", "mg"): 5,
                   ("ICU-2", MORPHINE, HOUR, "mg"): 7}
    assert merged["records"] == 15


def test_merging_no_partials_is_an_empty_result():
    merged = merge_administration_counts([], params=counts_params())

    assert merged["records"] == 0 and merged["groups"] == []


def test_dose_totals_are_rounded_to_four_places():
    partials = [counts_partial("ICU-1", group(count=1, dose_total=0.1)),
                counts_partial("ICU-2", group(count=1, dose_total=0.2))]

    merged = merge_administration_counts(partials, params=counts_params(["medication"]))

    assert merged["groups"][0]["dose_total"] == 0.3  # 0.1 + 0.2, rounded to 4 places


def test_small_counts_are_shown_as_below_k_and_their_dose_total_is_hidden():
    partials = [counts_partial("ICU-1", group("ICU-1", MORPHINE, count=4, dose_total=8.0),
                               group("ICU-1", HEPARIN, count=5, dose_total=25000.0)),
                counts_partial("ICU-2", group("ICU-2", MORPHINE, count=12, dose_total=30.0))]

    merged = merge_administration_counts(partials, params=counts_params(suppress_below=5))

    rows = {(row["unit"], row["medication"]): row for row in merged["groups"]}
    assert rows["ICU-1", MORPHINE]["count"] == "<5"
    assert rows["ICU-1", MORPHINE]["dose_total"] is None
    assert rows["ICU-1", HEPARIN]["count"] == 5  # k itself is not suppressed
    assert rows["ICU-1", HEPARIN]["dose_total"] == 25000.0
    assert rows["ICU-2", MORPHINE] == {"unit": "ICU-2", "medication": MORPHINE, "count": 12,
                                       "dose_total": 30.0, "dose_unit": "mg"}
    assert merged["suppressed_below"] == 5
    assert merged["records"] is None  # 21 would give the hidden 4 away (21 - 5 - 12)


def test_a_small_number_of_records_is_suppressed_too():
    merged = merge_administration_counts(
        [counts_partial("ICU-1", group(None, count=2)), counts_partial("ICU-2", group(None, count=1))],
        params=counts_params(["medication"], suppress_below=10))

    assert merged["records"] == "<10"
    assert merged["groups"] == [{"medication": MORPHINE, "count": "<10", "dose_total": None,
                                 "dose_unit": "mg"}]


def test_suppression_applies_to_the_merged_count_not_to_each_units_part():
    # 3 + 3 doses of one drug across two units: each part is small, the group is not.
    merged = merge_administration_counts(
        [counts_partial("ICU-1", group(None, count=3)), counts_partial("ICU-2", group(None, count=3))],
        params=counts_params(["medication"], suppress_below=5))

    assert merged["groups"][0]["count"] == 6 and merged["groups"][0]["dose_total"] == 4.0


def test_a_suppressed_group_cannot_be_recovered_from_the_records_total():
    # records is the exact sum of all groups: with one group suppressed, records minus the
    # visible counts is the suppressed count (complementary disclosure).
    merged = merge_administration_counts(
        [counts_partial("ICU-1", group("ICU-1", count=3)),
         counts_partial("ICU-2", group("ICU-2", count=40))],
        params=counts_params(suppress_below=5))
    visible = sum(row["count"] for row in merged["groups"] if isinstance(row["count"], int))

    assert merged["groups"][0]["count"] == "<5"
    assert not (isinstance(merged["records"], int) and merged["records"] - visible == 3), (
        f"records={merged['records']} minus visible {visible} reveals the suppressed count")


# --- dose reconciliation --------------------------------------------------------------------

def test_reconciliation_lists_units_in_order_and_totals_every_measure():
    partials = [reconciliation_partial("ICU-2", dispensed=20, matched=15, without_dispense=3,
                                       never_administered=5),
                reconciliation_partial("ED-1", dispensed=30, matched=25, without_dispense=6,
                                       never_administered=5)]

    merged = merge_dose_reconciliation(partials, params={"window": WINDOW})

    assert merged["type"] == "dose_reconciliation"
    assert [row["unit"] for row in merged["units"]] == ["ED-1", "ICU-2"]
    assert merged["units"][1] == {"unit": "ICU-2", "dispensed": 20, "matched": 15,
                                  "administered_without_dispense": 3,
                                  "dispensed_never_administered": 5}
    assert merged["totals"] == {"dispensed": 50, "matched": 40,
                                "administered_without_dispense": 9,
                                "dispensed_never_administered": 10}
    assert "suppressed_below" not in merged


def test_reconciliation_suppresses_small_unit_figures_and_small_totals():
    partials = [reconciliation_partial("ICU-1", dispensed=9, matched=6, without_dispense=1,
                                       never_administered=3),
                reconciliation_partial("ICU-2", dispensed=8, matched=8, without_dispense=0,
                                       never_administered=0)]

    merged = merge_dose_reconciliation(partials, params={"window": WINDOW, "suppress_below": 5})

    assert merged["units"][0] == {"unit": "ICU-1", "dispensed": 9, "matched": 6,
                                  "administered_without_dispense": "<5",
                                  "dispensed_never_administered": "<5"}
    assert merged["units"][1]["administered_without_dispense"] == 0  # zero is not small
    # Totals are taken over the true figures, then suppressed themselves (a small total says
    # only that it is small; a large one next to a hidden cell is withheld, see below).
    assert merged["totals"] == {"dispensed": 17, "matched": 14,
                                "administered_without_dispense": "<5",
                                "dispensed_never_administered": "<5"}
    assert merged["suppressed_below"] == 5


def test_a_suppressed_unit_figure_cannot_be_recovered_from_the_totals():
    # One unit's matched count is suppressed, but the exact total is shown: total minus the
    # other (visible) units is the suppressed figure (complementary disclosure).
    partials = [reconciliation_partial("ICU-1", matched=3),
                reconciliation_partial("ICU-2", matched=40)]

    merged = merge_dose_reconciliation(partials, params={"window": WINDOW, "suppress_below": 5})

    assert merged["units"][0]["matched"] == "<5"
    total = merged["totals"]["matched"]
    assert not (isinstance(total, int) and total - merged["units"][1]["matched"] == 3), (
        f"totals.matched={total} minus ICU-2's 40 reveals ICU-1's suppressed count")


# --- dispense reconciliation -----------------------------------------------------------------

def test_dispensing_rows_are_flagged_where_the_three_systems_disagree():
    merged = merge_dispense_reconciliation([
        dispensing_partial("ICU-1", dispensing(MORPHINE, pharmacy=12, charted=10, inventory=12),
                           dispensing(HEPARIN, pharmacy=5, charted=5, inventory=5)),
        dispensing_partial("ED-1", dispensing(MORPHINE, pharmacy=3, charted=4, inventory=2)),
    ], params={"window": WINDOW})

    flags = {(unit["unit"], row["medication"]): row["flags"]
             for unit in merged["units"] for row in unit["medications"]}
    assert flags == {("ED-1", MORPHINE): ["charted_above_pharmacy",
                                          "inventory_differs_from_pharmacy"],
                     ("ICU-1", HEPARIN): [], ("ICU-1", MORPHINE): ["pharmacy_above_charted"]}
    assert merged["totals"] == {"pharmacy_dispenses": 20, "administrations": 19,
                                "inventory_dispenses": 19, "flagged": 2}
    assert [unit["unit"] for unit in merged["units"]] == ["ED-1", "ICU-1"]


def test_suppressed_dispensing_counts_hide_their_quantities_and_revealing_totals():
    merged = merge_dispense_reconciliation([
        dispensing_partial("ICU-1", dispensing(MORPHINE, pharmacy=3, charted=30, inventory=30)),
        dispensing_partial("ED-1", dispensing(MORPHINE, pharmacy=40, charted=40, inventory=40)),
    ], params={"window": WINDOW, "suppress_below": 5})

    icu = merged["units"][1]["medications"][0]
    assert (icu["pharmacy_dispenses"], icu["pharmacy_quantity"]) == ("<5", None)
    assert icu["administered_quantity"] == 60.0
    assert merged["totals"]["pharmacy_dispenses"] is None
    assert merged["totals"]["administrations"] == 70


# --- the PHI check --------------------------------------------------------------------------

def real_counts_result() -> dict:
    result = merge_administration_counts(
        [counts_partial("ICU-1", group("ICU-1", MORPHINE, HOUR, count=3),
                        group("ICU-1", HEPARIN, HOUR, count=9, dose_unit="unit")),
         counts_partial("ED-1", group("ED-1", MORPHINE, HOUR, count=11))],
        params=counts_params(["unit", "medication", "hour"], suppress_below=5))
    result["window"] = dict(WINDOW)
    return result


def real_dispensing_result() -> dict:
    result = merge_dispense_reconciliation(
        [dispensing_partial("ICU-1", dispensing(MORPHINE, pharmacy=3),
                            dispensing(HEPARIN, dose_unit="unit"))],
        params={"window": WINDOW, "suppress_below": 5})
    result["window"] = dict(WINDOW)
    return result


def real_reconciliation_result() -> dict:
    result = merge_dose_reconciliation(
        [reconciliation_partial("ICU-1"), reconciliation_partial("ED-1", matched=2)],
        params={"window": WINDOW, "suppress_below": 5})
    result["window"] = dict(WINDOW)
    return result


@pytest.mark.parametrize("make", [real_counts_result, real_reconciliation_result,
                                  real_dispensing_result],
                         ids=["administration_counts", "dose_reconciliation",
                              "dispense_reconciliation"])
def test_real_merged_results_pass_the_check(make):
    assert_phi_free(make())  # does not raise


def test_every_merger_is_covered():
    assert set(MERGERS) == {"administration_counts", "dose_reconciliation",
                            "dispense_reconciliation"}


@pytest.mark.parametrize("name", ["patient", "mrn", "name", "note", "birth_date", "nurse_id",
                                  "full_name"])
@pytest.mark.parametrize("where", ["top", "group", "nested"])
def test_a_phi_field_name_is_rejected_at_any_depth(name, where):
    result = real_counts_result()
    if where == "top":
        result[name] = "x"
    elif where == "group":
        result["groups"][1][name] = "x"
    else:
        result["window"]["since"] = {"units": [{"unit": "ICU-1", name: {"count": 1}}]}

    with pytest.raises(UnsafeResult, match=rf"\.{name} is not allowed"):
        assert_phi_free(result)


@pytest.mark.parametrize("name", ["ward", "container_barcode", "Unit", "patient_pseudonym", 1])
def test_a_field_the_result_shape_does_not_know_is_rejected(name):
    result = real_reconciliation_result()
    result["units"][0][name] = 1

    with pytest.raises(UnsafeResult, match="is not allowed"):
        assert_phi_free(result)


@pytest.mark.parametrize("value", ["MRN12345678", "mrn: 4471", "MRN-00012345",
                                   "jane.doe@example.org", "123-45-6789", "(555) 123-4567"])
def test_an_identifier_shaped_value_is_rejected(value):
    result = real_counts_result()
    result["groups"][0]["medication"] = value

    with pytest.raises(UnsafeResult, match="looks like an identifier or free text") as raised:
        assert_phi_free(result)
    assert value not in str(raised.value)


def test_long_free_text_is_rejected_and_64_characters_are_not():
    note = "Patient Jane Doe was drowsy after the dose; held the next one per MD."
    result = real_counts_result()

    result["groups"][0]["unit"] = note
    with pytest.raises(UnsafeResult, match=r"result\.groups\[\]\.unit"):
        assert_phi_free(result)
    result["groups"][0]["unit"] = "U" * 64
    assert_phi_free(result)
    result["groups"][0]["unit"] = "U" * 65
    with pytest.raises(UnsafeResult):
        assert_phi_free(result)


@pytest.mark.parametrize("value", [b"MRN", ("ICU-1",), {"ICU-1"}, object(),
                                   date(1950, 3, 2), Decimal("1.5")],
                         ids=["bytes", "tuple", "set", "object", "date", "decimal"])
def test_a_value_of_an_unexpected_type_is_rejected(value):
    result = real_reconciliation_result()
    result["totals"]["matched"] = value

    with pytest.raises(UnsafeResult, match=r"result\.totals\.matched has an unexpected type"):
        assert_phi_free(result)


@pytest.mark.parametrize("value", [None, 0, 3.5, True, "<5", [], {}])
def test_plain_values_are_accepted(value):
    result = real_reconciliation_result()
    result["totals"]["matched"] = value

    assert_phi_free(result)
