"""Parameters and answers of the lookup endpoints."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.canonical.fields import IdField, NdcField, UnitCodeField, UtcDateTimeField
from app.canonical.parameters import StrictSchema
from app.paging import CursorField

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


class PageQuerySchema(StrictSchema):
    cursor = CursorField()
    page_size = fields.Integer(load_default=DEFAULT_PAGE_SIZE,
                               validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
                               metadata={"description": f"At most {MAX_PAGE_SIZE}."})


class AdministrationQuerySchema(PageQuerySchema):
    unit = UnitCodeField(metadata={"description": "Hospital unit, any spelling (`ICU-3`, `ICU3`).",
                                   "example": "ICU-3"})
    medication = NdcField(metadata={"description": "NDC in any common format: NDC-11, or dashed "
                                                   "4-4-2, 5-3-2, 5-4-1, 5-4-2.",
                                    "example": "97031-6054-6"})
    since = UtcDateTimeField(metadata={"description": "Given at or after (with UTC offset).",
                                       "example": "2026-11-06T00:00:00Z"})
    until = UtcDateTimeField(metadata={"description": "Given before (with UTC offset).",
                                       "example": "2026-11-20T00:00:00Z"})

    @validates_schema
    def _window_in_order(self, data, **_kwargs):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ValidationError("must be after since", field_name="until")


class InventoryQuerySchema(PageQuerySchema):
    unit = UnitCodeField(metadata={"example": "ICU-3"})
    medication = NdcField(metadata={"example": "97031-6054-6"})


class ContainerPathSchema(StrictSchema):
    """The container id is checked before it goes into the inventory system's URL."""

    container_id = IdField(required=True, metadata={"example": "NGH-C00001234"})


class MedicationOutSchema(Schema):
    ndc11 = fields.String(metadata={"example": "97031605406"})
    name = fields.String(metadata={"example": "Oxycodone"})
    strength = fields.String(allow_none=True, metadata={"example": "5 mg tablet"})


class AdministrationOutSchema(Schema):
    """A dose administration as a consumer sees it: the patient only as a pseudonym and a birth
    year (or 90+), the nurse as a pseudonym, no names, MRNs or notes."""

    administration_id = fields.String(metadata={"example": "NGH-A000001234"})
    unit = fields.String(metadata={"example": "ICU-3"})
    medication = fields.Nested(MedicationOutSchema)
    dose = fields.Dict(metadata={"example": {"quantity": 2.0, "unit": "mg"}})
    route = fields.String(metadata={"example": "IV"})
    administered_at = fields.String(metadata={"example": "2026-11-18T13:15:00Z"})
    container_barcode = fields.String(allow_none=True, metadata={"example": "NGH00001234"})
    nurse_ref = fields.String(metadata={"example": "st_k3j2h4g5f6d7s8a9q0w1e2r3t4"})
    patient = fields.Dict(metadata={"example": {"ref": "pt_m2n3b4v5c6x7z8l9k0j1h2g3f4",
                                                "birth_year": "1957"}})


class AdministrationPageSchema(Schema):
    items = fields.List(fields.Nested(AdministrationOutSchema))
    next_cursor = fields.String(allow_none=True)


class LocationOutSchema(Schema):
    facility = fields.String(metadata={"example": "NGH"})
    unit = fields.String(allow_none=True, metadata={"example": "ICU-3"})
    cabinet = fields.String(allow_none=True, metadata={"example": "ICU-3-CAB1"})


class ContainerOutSchema(Schema):
    container_id = fields.String(metadata={"example": "NGH-C00001234"})
    barcode = fields.String(metadata={"example": "NGH00001234"})
    medication = fields.Nested(MedicationOutSchema)
    lot = fields.String(metadata={"example": "L24K118"})
    expires_on = fields.String(metadata={"example": "2027-06-30"})
    location = fields.Nested(LocationOutSchema)
    status = fields.String(metadata={"example": "dispensed"})


class MovementOutSchema(Schema):
    movement_id = fields.String(metadata={"example": "NGH-C00001234-D"})
    type = fields.String(metadata={"example": "dispensed"})
    from_location = fields.String(allow_none=True, metadata={"example": "ICU-3-CAB1"})
    to_location = fields.String(metadata={"example": "ICU-3"})
    at = fields.String(metadata={"example": "2026-11-18T13:15:00Z"})


class ContainerOriginOutSchema(ContainerOutSchema):
    movements = fields.List(fields.Nested(MovementOutSchema))


class InventoryPageSchema(Schema):
    items = fields.List(fields.Nested(ContainerOutSchema))
    next_cursor = fields.String(allow_none=True)


class DispenseQuerySchema(AdministrationQuerySchema):
    """Filters of the dispenses lookup: unit, medication and a window of dispense times."""

    since = UtcDateTimeField(metadata={"description": "Dispensed at or after (with UTC offset).",
                                       "example": "2026-11-06T00:00:00Z"})
    until = UtcDateTimeField(metadata={"description": "Dispensed before (with UTC offset).",
                                       "example": "2026-11-20T00:00:00Z"})


class DoseOutSchema(Schema):
    quantity = fields.Float(metadata={"example": 2})
    unit = fields.String(metadata={"example": "mg"})


class DispensePatientOutSchema(Schema):
    ref = fields.String(metadata={"description": "Tenant-scoped pseudonym of the patient.",
                                  "example": "pt_3f9c2a71d0e84b55"})


class DispenseOutSchema(Schema):
    """What the pharmacy dispensed, as a consumer sees it: the patient only as a pseudonym."""

    dispense_id = fields.String(metadata={"example": "NGH-D00000042"})
    order_number = fields.String(metadata={"example": "RX0042"})
    unit = fields.String(metadata={"example": "ICU-3"})
    medication = fields.Nested(MedicationOutSchema)
    dose = fields.Nested(DoseOutSchema)
    route = fields.String(allow_none=True, metadata={"example": "IV"})
    dispensed_at = fields.String(metadata={"example": "2026-11-18T13:15:00Z"})
    container_barcode = fields.String(allow_none=True)
    patient = fields.Nested(DispensePatientOutSchema)


class DispensePageSchema(Schema):
    items = fields.List(fields.Nested(DispenseOutSchema))
    next_cursor = fields.String(allow_none=True)
