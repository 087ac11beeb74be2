"""Merging unit partials into a job result.

Nothing is stored as a result unless :func:`app.phi.boundary.assert_phi_free` passes (the job
service checks every merged result before it stores it).
"""

from __future__ import annotations

from collections.abc import Iterable


def _suppress(count: int, below: int | None):
    return f"<{below}" if below and 0 < count < below else count


def _suppressed_total(total: int, below: int | None, parts_hidden: bool):
    """A total is shown as "<k" when small; when large but one of its parts is hidden, it is
    withheld (None): total minus the visible parts would give the hidden part away."""
    shown = _suppress(total, below)
    return None if parts_hidden and not isinstance(shown, str) else shown


def merge_administration_counts(partials: Iterable[dict], *, params: dict) -> dict:
    """Add up the units' groups (one row per unit × medication × hour × dose unit)."""
    merged: dict[tuple, dict] = {}
    records = 0
    for partial in partials:
        records += partial["records"]
        for group in partial["groups"]:
            key = (group["unit"], group["medication"], group["hour"], group["dose_unit"])
            total = merged.setdefault(key, {"count": 0, "dose_total": 0.0})
            total["count"] += group["count"]
            total["dose_total"] += group["dose_total"]
    below = params.get("suppress_below")
    groups = []
    for (unit, medication, hour, dose_unit), total in sorted(merged.items(),
                                                              key=lambda item: str(item[0])):
        row = {"count": _suppress(total["count"], below),
               "dose_total": round(total["dose_total"], 4), "dose_unit": dose_unit}
        if below and isinstance(row["count"], str):
            row["dose_total"] = None  # a total would reveal the suppressed count's size
        for field, value in (("unit", unit), ("medication", medication), ("hour", hour)):
            if value is not None:
                row[field] = value
        groups.append(row)
    any_hidden = any(isinstance(group["count"], str) for group in groups)
    return {"type": "administration_counts", "group_by": params["group_by"],
            "records": _suppressed_total(records, below, any_hidden), "groups": groups,
            **({"suppressed_below": below} if below else {})}


def merge_dose_reconciliation(partials: Iterable[dict], *, params: dict) -> dict:
    """List each unit's reconciliation and the totals over all units."""
    below = params.get("suppress_below")
    measures = ("dispensed", "matched", "administered_without_dispense",
                "dispensed_never_administered")
    units, totals = [], dict.fromkeys(measures, 0)
    for partial in sorted(partials, key=lambda item: item["unit"]):
        units.append({"unit": partial["unit"],
                      **{measure: _suppress(partial[measure], below) for measure in measures}})
        for measure in measures:
            totals[measure] += partial[measure]
    hidden = {measure for measure in measures
              if any(isinstance(unit[measure], str) for unit in units)}
    return {"type": "dose_reconciliation", "units": units,
            "totals": {measure: _suppressed_total(value, below, measure in hidden)
                       for measure, value in totals.items()},
            **({"suppressed_below": below} if below else {})}


# Where the three systems disagree about a unit's medication (counts, before suppression).
PHARMACY_ABOVE_CHARTED = "pharmacy_above_charted"
"""The pharmacy dispensed more doses than the eMAR charted: doses unaccounted for."""
CHARTED_ABOVE_PHARMACY = "charted_above_pharmacy"
"""The eMAR charted more doses than the pharmacy dispensed: doses from elsewhere."""
INVENTORY_DIFFERS = "inventory_differs_from_pharmacy"
"""What left inventory for the unit is not what the pharmacy says it dispensed."""

_DISPENSING_COUNTS = ("pharmacy_dispenses", "administrations", "inventory_dispenses")
_DISPENSING_QUANTITIES = {"pharmacy_quantity": "pharmacy_dispenses",
                          "administered_quantity": "administrations"}


def _dispensing_flags(counts: dict) -> list[str]:
    flags = []
    if counts["pharmacy_dispenses"] > counts["administrations"]:
        flags.append(PHARMACY_ABOVE_CHARTED)
    elif counts["administrations"] > counts["pharmacy_dispenses"]:
        flags.append(CHARTED_ABOVE_PHARMACY)
    if counts["inventory_dispenses"] != counts["pharmacy_dispenses"]:
        flags.append(INVENTORY_DIFFERS)
    return flags


def merge_dispense_reconciliation(partials: Iterable[dict], *, params: dict) -> dict:
    """List each unit's medications with the three systems' counts and quantities and where
    they disagree, and the totals over all units."""
    below = params.get("suppress_below")
    units, totals, flagged = [], dict.fromkeys(_DISPENSING_COUNTS, 0), 0
    for partial in sorted(partials, key=lambda item: item["unit"]):
        medications = []
        for entry in partial["medications"]:
            row = {"medication": entry["medication"], "dose_unit": entry["dose_unit"]}
            for count in _DISPENSING_COUNTS:
                row[count] = _suppress(entry[count], below)
                totals[count] += entry[count]
            for quantity, count in _DISPENSING_QUANTITIES.items():
                # A quantity would reveal the size of a suppressed count.
                row[quantity] = None if isinstance(row[count], str) else round(entry[quantity], 4)
            row["flags"] = _dispensing_flags(entry)
            flagged += bool(row["flags"])
            medications.append(row)
        units.append({"unit": partial["unit"], "medications": medications})
    hidden = {count for count in _DISPENSING_COUNTS if any(
        isinstance(row[count], str) for unit in units for row in unit["medications"])}
    return {"type": "dispense_reconciliation", "units": units,
            "totals": {**{count: _suppressed_total(value, below, count in hidden)
                          for count, value in totals.items()}, "flagged": flagged},
            **({"suppressed_below": below} if below else {})}


MERGERS = {"administration_counts": merge_administration_counts,
           "dose_reconciliation": merge_dose_reconciliation,
           "dispense_reconciliation": merge_dispense_reconciliation}
