"""Shapes of ``/v1/admin/parallel-runs`` answers and changes."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.canonical.parameters import StrictSchema

_TIME = {"description": "UTC, ISO 8601.", "example": "2026-12-02T10:30:00Z"}


class ComparisonCountsSchema(Schema):
    comparisons = fields.Integer(metadata={"example": 120})
    matches = fields.Integer(metadata={"example": 84})
    mismatches = fields.Integer(metadata={"example": 31})
    legacy_errors = fields.Integer(metadata={"description": "The legacy endpoint failed, timed "
                                                            "out or answered something "
                                                            "unusable.", "example": 5})


class TopFieldSchema(Schema):
    field = fields.String(metadata={"description": "A canonical field, lists marked []. ",
                                    "example": "movements[].at"})
    kind = fields.String(metadata={"description": "missing (from the legacy answer), extra "
                                                  "(only in it), changed, or type.",
                                   "example": "changed"})
    count = fields.Integer(metadata={"example": 31})


class DifferenceSchema(Schema):
    comparison_id = fields.String(metadata={"description": "Groups the differences of one "
                                                           "comparison."})
    compared_at = fields.String(metadata=_TIME)
    path = fields.String(metadata={"example": "movements[2]"})
    field = fields.String(metadata={"example": "movements[]"})
    kind = fields.String(metadata={"example": "missing"})
    hub_value = fields.String(allow_none=True, metadata={
        "description": "Shown only for fields the PHI policy passes through unchanged, and "
                       "only when the value passes the hub's PHI check.", "example": "LOT4821A"})
    legacy_value = fields.String(allow_none=True, metadata={"example": "lot4821a"})


class ParallelRunSchema(Schema):
    id = fields.String(metadata={"example": "6b1f2a8e-3c1d-4f59-9a63-0d2f8e4b7c15"})
    tenant = fields.String(metadata={"example": "north-general"})
    lookup = fields.String(metadata={"example": "container_origin"})
    legacy_base_url = fields.String(metadata={"example": "https://inventory.example/legacy/v1"})
    legacy_credential_ref = fields.String(metadata={"description": "A reference (env: or "
                                                                   "file:), never the secret.",
                                                    "example": "file:legacy-inventory.key"})
    legacy_timezone = fields.String(metadata={"example": "America/New_York"})
    sample_rate = fields.Float(metadata={"example": 0.25})
    enabled = fields.Boolean()
    counts = fields.Nested(ComparisonCountsSchema)
    mismatch_rate = fields.Float(allow_none=True, metadata={
        "description": "mismatches / (matches + mismatches); legacy errors are not in it.",
        "example": 0.2696})
    last_legacy_error = fields.String(allow_none=True, metadata={
        "description": "unavailable, not_found, rejected, no_credential or unusable.",
        "example": "unavailable"})
    last_compared_at = fields.String(allow_none=True, metadata=_TIME)
    updated_at = fields.String(metadata=_TIME)
    updated_by = fields.String(allow_none=True)
    top_fields = fields.List(fields.Nested(TopFieldSchema))
    recent_differences = fields.List(fields.Nested(DifferenceSchema))


class ParallelRunListSchema(Schema):
    items = fields.List(fields.Nested(ParallelRunSchema))


class ParallelRunChangeSchema(StrictSchema):
    sample_rate = fields.Float(validate=validate.Range(min=0.0, max=1.0), allow_nan=False,
                               metadata={"description": "Fraction of lookups compared, 0 to 1.",
                                         "example": 0.1})
    enabled = fields.Boolean(metadata={"example": False})

    @validates_schema
    def _something(self, data, **_kwargs):
        if not data:
            raise ValidationError("give sample_rate and/or enabled", field_name="_schema")
