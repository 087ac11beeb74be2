"""Merging unit partials into a job result, and the check at the results-database boundary.

Nothing is stored as a result unless ``assert_phi_free`` passes: only the known aggregate
fields may appear, no PHI field name anywhere, and no value shaped like an identifier.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.observability.logs import scrub
from app.phi.policy import PHI_FIELD_PATHS

# Field names a result may contain, at any depth. A new result shape must be added here on
# purpose, after checking it cannot carry patient data.
RESULT_FIELDS = frozenset({
    "type", "window", "since", "until", "units", "groups", "unit", "medication", "hour",
    "dose_unit", "count", "dose_total", "records", "totals", "dispensed", "matched",
    "administered_without_dispense", "dispensed_never_administered", "suppressed_below",
    "group_by",
})
_PHI_NAMES = frozenset(part for path in PHI_FIELD_PATHS for part in path.split(".")) | {
    "patient", "mrn", "name", "birth_date", "note", "nurse_id", "full_name"}


class UnsafeResult(ValueError):
    """A result failed the PHI check; the message names the field, never the value."""


def assert_phi_free(value, path: str = "result", *,
                    allowed_fields: frozenset[str] = RESULT_FIELDS) -> None:
    """Raise ``UnsafeResult`` unless ``value`` holds only allowed fields and safe values.

    ``allowed_fields`` is the allow-list of field names (job results by default; a sync run's
    report passes its own)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _PHI_NAMES or key not in allowed_fields:
                raise UnsafeResult(f"field {path}.{key} is not allowed in a result")
            assert_phi_free(item, f"{path}.{key}", allowed_fields=allowed_fields)
    elif isinstance(value, list):
        for item in value:
            assert_phi_free(item, f"{path}[]", allowed_fields=allowed_fields)
    elif isinstance(value, str):
        if scrub(value) != value or len(value) > 64:
            raise UnsafeResult(f"value at {path} looks like an identifier or free text")
    elif not (value is None or isinstance(value, (int, float, bool))):
        raise UnsafeResult(f"value at {path} has an unexpected type")


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


MERGERS = {"administration_counts": merge_administration_counts,
           "dose_reconciliation": merge_dose_reconciliation}
