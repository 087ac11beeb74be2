"""The canonical schema: one shape per resource, whatever system it came from.

Connectors produce these dicts (``load``-validated here, so a half-mapped record never passes);
the PHI policy then cuts them down per consumer before anything is cached or returned. Times
are UTC ``...Z`` strings, NDCs 11 digits, unit codes canonical (``ICU-3``).
"""

from __future__ import annotations

import re

from marshmallow import RAISE, Schema, fields, validate

# re.ASCII: \d would otherwise match every script's digits.
NDC11 = validate.Regexp(r"^\d{11}$", re.ASCII, error="an NDC-11 has 11 digits")
UNIT_CODE = validate.Regexp(r"^[A-Z&/]+(-[A-Z&/]+)*(-\d+)?$", re.ASCII,
                            error="not a canonical unit code")
UTC_TIMESTAMP = validate.Regexp(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", re.ASCII,
                                error="not a UTC timestamp (…Z)")


class CanonicalSchema(Schema):
    """Base: unknown fields are an error, so a connector cannot pass native fields through."""

    class Meta:
        unknown = RAISE


class MedicationSchema(CanonicalSchema):
    ndc11 = fields.String(required=True, validate=NDC11)
    name = fields.String(required=True)
    strength = fields.String(load_default=None, allow_none=True)


class DoseSchema(CanonicalSchema):
    quantity = fields.Float(required=True)
    unit = fields.String(required=True)


class PatientSchema(CanonicalSchema):
    """The patient as the administration system holds them: PHI, in worker/API memory only."""

    mrn = fields.String(required=True)
    name = fields.String(required=True)
    birth_date = fields.Date(required=True)


class AdministrationSchema(CanonicalSchema):
    """One dose given to one patient (from the administration system)."""

    administration_id = fields.String(required=True)
    unit = fields.String(required=True, validate=UNIT_CODE)
    medication = fields.Nested(MedicationSchema, required=True)
    dose = fields.Nested(DoseSchema, required=True)
    route = fields.String(required=True)
    administered_at = fields.String(required=True, validate=UTC_TIMESTAMP)
    container_barcode = fields.String(load_default=None, allow_none=True)
    nurse_id = fields.String(required=True)
    patient = fields.Nested(PatientSchema, required=True)
    note = fields.String(load_default=None, allow_none=True)


class PrescribedPatientSchema(CanonicalSchema):
    """The patient of a pharmacy order or dispense: the MRN only (PHI, in memory only)."""

    mrn = fields.String(required=True)


class HeardPatientSchema(PatientSchema):
    """The patient as an HL7 PID carries them: name and birth date may be absent (PID-7 is
    optional in HL7); when present they exist in memory only, like System B's."""

    name = fields.String(load_default=None, allow_none=True)
    birth_date = fields.Date(load_default=None, allow_none=True)


class HeardAdministrationSchema(AdministrationSchema):
    """An administration as the pharmacy heard of it (HL7 RAS): the shape of
    :class:`AdministrationSchema`, but the nurse (RXA-10) and the patient's name and birth
    date may be absent."""

    nurse_id = fields.String(load_default=None, allow_none=True)
    patient = fields.Nested(HeardPatientSchema, required=True)


class MedicationOrderSchema(CanonicalSchema):
    """A medication order for one patient on one unit (from the pharmacy system)."""

    order_number = fields.String(required=True, validate=validate.Length(min=1, max=64))
    unit = fields.String(required=True, validate=UNIT_CODE)
    medication = fields.Nested(MedicationSchema, required=True)
    dose = fields.Nested(DoseSchema, required=True)
    route = fields.String(load_default=None, allow_none=True)
    ordered_at = fields.String(required=True, validate=UTC_TIMESTAMP)
    patient = fields.Nested(PrescribedPatientSchema, required=True)


class DispenseSchema(CanonicalSchema):
    """Medication the pharmacy dispensed for one patient to a unit (from the pharmacy system)."""

    dispense_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    order_number = fields.String(required=True, validate=validate.Length(min=1, max=64))
    unit = fields.String(required=True, validate=UNIT_CODE)
    medication = fields.Nested(MedicationSchema, required=True)
    dose = fields.Nested(DoseSchema, required=True)
    route = fields.String(load_default=None, allow_none=True)
    dispensed_at = fields.String(required=True, validate=UTC_TIMESTAMP)
    container_barcode = fields.String(load_default=None, allow_none=True)
    patient = fields.Nested(PrescribedPatientSchema, required=True)


class LocationSchema(CanonicalSchema):
    facility = fields.String(required=True)
    unit = fields.String(load_default=None, allow_none=True, validate=UNIT_CODE)
    cabinet = fields.String(load_default=None, allow_none=True)


class MovementSchema(CanonicalSchema):
    movement_id = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(["received", "stocked",
                                                                  "dispensed"]))
    from_location = fields.String(load_default=None, allow_none=True)
    to_location = fields.String(required=True)
    at = fields.String(required=True, validate=UTC_TIMESTAMP)


class ContainerSchema(CanonicalSchema):
    """A medication container or vial (from the inventory system). Holds no PHI."""

    container_id = fields.String(required=True)
    barcode = fields.String(required=True)
    medication = fields.Nested(MedicationSchema, required=True)
    lot = fields.String(required=True)
    expires_on = fields.Date(required=True)
    location = fields.Nested(LocationSchema, required=True)
    status = fields.String(required=True)


class ContainerOriginSchema(ContainerSchema):
    """A container with its movement chain, oldest first: where it came from, and when."""

    movements = fields.List(fields.Nested(MovementSchema), required=True)


class LocationCatalogueEntrySchema(CanonicalSchema):
    """One place of a site's location catalogue: its pharmacy, a unit, or a unit's cabinet."""

    code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    kind = fields.String(required=True, validate=validate.OneOf(["pharmacy", "unit", "cabinet"]))
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    parent = fields.String(load_default=None, allow_none=True, validate=UNIT_CODE)
