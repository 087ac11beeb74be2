"""The PHI boundary: which fields are PHI, and the checks every sink runs before it keeps a value.

Sinks and their checks (each calls this module; none has a copy of its own):

- results database (job results) and sync reports: :func:`assert_phi_free` — an allow-list of
  field names, no PHI field name at any depth, no identifier-shaped or long free-text value;
- cache entries: :func:`assert_no_phi_fields` — a minimized record may hold pseudonyms and
  generalized values, but never a raw PHI field (:data:`PHI_FIELD_PATHS`);
- Celery task arguments: :func:`assert_task_arguments` — ids only;
- FHIR output: :func:`people_for_fhir` — what of a patient (and of the nurse) a FHIR document
  may carry, from minimized records only;
- parallel-run differences: :func:`reportable_value`, for fields the policy keeps unchanged;
- logs: :mod:`app.phi.redaction` masks identifier-shaped text in every log line.

Every refusal is :class:`UnsafeResult`, whose message names the field, never the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from app.phi.redaction import looks_like_identifier

PHI_FIELD_PATHS: frozenset[str] = frozenset(
    {"patient.mrn", "patient.name", "patient.birth_date", "note", "nurse_id"})
"""Canonical paths that hold PHI: a policy may never keep them as they are, and no sink may
hold them."""

PHI_FIELD_NAMES: frozenset[str] = frozenset(
    part for path in PHI_FIELD_PATHS for part in path.split(".")) | {
    "patient", "mrn", "name", "birth_date", "note", "nurse_id", "full_name"}
"""Field names an aggregate (a job result, a sync report) may never use, at any depth."""

JOB_RESULT_FIELDS = frozenset({
    "type", "window", "since", "until", "units", "groups", "unit", "medication", "hour",
    "dose_unit", "count", "dose_total", "records", "totals", "dispensed", "matched",
    "administered_without_dispense", "dispensed_never_administered", "suppressed_below",
    "group_by", "medications", "pharmacy_dispenses", "pharmacy_quantity", "administrations",
    "administered_quantity", "inventory_dispenses", "flags", "flagged",
})
"""Field names a job result may contain, at any depth. A new result shape is added here on
purpose, after checking it cannot carry patient data."""

MAX_SAFE_TEXT = 64
"""Longer text in an aggregate is taken for free text (a note, a name list) and refused."""


class UnsafeResult(ValueError):
    """A value failed a PHI check; the message names the field, never the value."""


def assert_phi_free(value, path: str = "result", *,
                    allowed_fields: frozenset[str] = JOB_RESULT_FIELDS) -> None:
    """Raise ``UnsafeResult`` unless ``value`` holds only allowed fields and safe values.

    ``allowed_fields`` is the allow-list of field names (job results by default; a sync run's
    report passes its own)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in PHI_FIELD_NAMES or key not in allowed_fields:
                raise UnsafeResult(f"field {path}.{key} is not allowed in a result")
            assert_phi_free(item, f"{path}.{key}", allowed_fields=allowed_fields)
    elif isinstance(value, list):
        for item in value:
            assert_phi_free(item, f"{path}[]", allowed_fields=allowed_fields)
    elif isinstance(value, str):
        _assert_safe_text(value, path)
    elif not (value is None or isinstance(value, (int, float, bool))):
        raise UnsafeResult(f"value at {path} has an unexpected type")


def reportable_value(value) -> bool:
    """Tell whether a single value may be kept in a report (a parallel run's differences): a
    number, a boolean, or short text with no identifier-shaped part. The caller also checks
    that the PHI policy passes its field through unchanged (``policy.disclosed_paths``)."""
    if isinstance(value, bool | int | float):
        return True
    return isinstance(value, str) and not looks_like_identifier(value) \
        and len(value) <= MAX_SAFE_TEXT


def _assert_safe_text(value: str, path: str) -> None:
    if looks_like_identifier(value) or len(value) > MAX_SAFE_TEXT:
        raise UnsafeResult(f"value at {path} looks like an identifier or free text")


def _phi_paths_in(value, path: str) -> Iterable[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in PHI_FIELD_PATHS:
                yield f"{path}.{key}"
            elif isinstance(item, Mapping):
                for leaf in item:
                    if f"{key}.{leaf}" in PHI_FIELD_PATHS:
                        yield f"{path}.{key}.{leaf}"
            yield from _phi_paths_in(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _phi_paths_in(item, f"{path}[]")


def assert_no_phi_fields(value, path: str = "payload") -> None:
    """Raise ``UnsafeResult`` if any record inside ``value`` still has a raw PHI field.

    This is the check for stores of minimized records (the cache): pseudonyms and generalized
    values pass, a record that skipped :func:`app.phi.policy.minimize` does not."""
    for found in _phi_paths_in(value, path):
        raise UnsafeResult(f"field {found} is PHI: only minimized records are accepted "
                           "(see app.phi.policy)")


def people_for_fhir(record: Mapping) -> dict[str, str | None]:
    """Return what of the people in a minimized record a FHIR document may carry.

    Only the tenant pseudonyms: ``patient`` (the patient's ``ref``) and ``staff`` (the
    ``nurse_ref``). The birth year (or ``90+``) the policy lets through is not emitted:
    MedicationAdministration has no element for it, and carrying it would need a contained
    Patient resource, which is more than a consumer of dose events needs.
    """
    # Fail loudly rather than rely on a builder happening not to read the raw fields.
    assert_no_phi_fields(record, "record")
    patient = record.get("patient") or {}
    return {"patient": patient.get("ref"), "staff": record.get("nurse_ref")}


def assert_task_arguments(arguments: Iterable) -> None:
    """Raise ``UnsafeResult`` unless every Celery task argument is an id (Flower and the broker
    show arguments): numbers, or short strings with no identifier-shaped part."""
    for position, argument in enumerate(arguments):
        if isinstance(argument, str):
            _assert_safe_text(argument, f"args[{position}]")
        elif not (argument is None or isinstance(argument, (int, float, bool))):
            raise UnsafeResult(f"task argument args[{position}] is not an id")
