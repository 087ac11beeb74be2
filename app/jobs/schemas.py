"""Shapes of job requests, parameters and answers."""

from __future__ import annotations

from datetime import timedelta

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from app.canonical.fields import NdcField, UnitCodeField, UtcDateTimeField, UtcTimestampField
from app.canonical.parameters import StrictSchema
from app.paging import CursorField

MAX_WINDOW = timedelta(days=31)
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
JOB_TYPES = ("administration_counts", "dose_reconciliation", "dispense_reconciliation")


class WindowSchema(StrictSchema):
    since = UtcDateTimeField(required=True, metadata={"example": "2026-11-06T00:00:00Z"})
    until = UtcDateTimeField(required=True, metadata={"example": "2026-11-20T00:00:00Z"})

    @validates_schema
    def _bounded(self, data, **_kwargs):
        if data["until"] <= data["since"]:
            raise ValidationError("must be after since", field_name="until")
        if data["until"] - data["since"] > MAX_WINDOW:
            raise ValidationError(f"a window spans at most {MAX_WINDOW.days} days",
                                  field_name="until")


class JobParamsSchema(StrictSchema):
    """Parameters every job type shares."""

    window = fields.Nested(WindowSchema, required=True)
    units = fields.List(UnitCodeField(), validate=validate.Length(min=1, max=200),
                        metadata={"description": "Units to include (default: every unit).",
                                  "example": ["ICU-3", "ED-1"]})
    suppress_below = fields.Integer(
        validate=validate.Range(min=2, max=100),
        metadata={"description": "Small-count suppression: counts below k are shown as "
                                 "\"<k\" in the result.", "example": 5})


class AdministrationCountsParamsSchema(JobParamsSchema):
    medication = NdcField(metadata={"description": "Only this medication (any NDC format).",
                                    "example": "97031-6054-6"})
    group_by = fields.List(fields.String(validate=validate.OneOf(["unit", "medication", "hour"])),
                           load_default=lambda: ["unit", "medication"],
                           validate=validate.Length(min=1, max=3),
                           metadata={"example": ["unit", "medication"]})


class DoseReconciliationParamsSchema(JobParamsSchema):
    pass


class DispenseReconciliationParamsSchema(JobParamsSchema):
    pass


class JobRequestSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(JOB_TYPES),
        metadata={"example": "administration_counts"})
    params = fields.Dict(required=True, metadata={"example": {
        "window": {"since": "2026-11-06T00:00:00Z", "until": "2026-11-20T00:00:00Z"},
        "medication": "97031-6054-6", "group_by": ["unit", "medication"]}})


class IdempotencyHeaderSchema(Schema):
    # Headers stay EXCLUDE: every request carries many headers the API does not read.
    class Meta:
        unknown = EXCLUDE

    idempotency_key = fields.String(
        data_key="Idempotency-Key", required=True,
        validate=validate.Regexp(r"^[A-Za-z0-9._:-]{8,200}$",
                                 error="8 to 200 characters of A-Z a-z 0-9 . _ : -"),
        metadata={"description": "Makes the submission safe to repeat.",
                  "example": "7c1f3a52-counts-2026-11-20"})


class ProgressSchema(Schema):
    units_done = fields.Integer(metadata={"example": 12})
    units_total = fields.Integer(metadata={"example": 21})


class JobSchema(Schema):
    id = fields.String(metadata={"example": "5b0f3a0e-1d2c-4c55-9a43-0f3b1e6b3c10"})
    type = fields.String(metadata={"example": "administration_counts"})
    status = fields.String(metadata={"example": "running"})
    params = fields.Dict()
    progress = fields.Nested(ProgressSchema)
    created_at = UtcTimestampField(metadata={"example": "2026-11-20T09:41:07Z"})
    started_at = UtcTimestampField(allow_none=True)
    finished_at = UtcTimestampField(allow_none=True)
    error = fields.String(allow_none=True, metadata={"description": "PHI-free."})
    failed_units = fields.List(fields.String())
    result = fields.Dict(allow_none=True, metadata={"description": "De-identified result, "
                                                                   "when succeeded."})
    status_url = fields.String()


class JobListQuerySchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(JOB_STATUSES))
    type = fields.String(validate=validate.OneOf(JOB_TYPES))
    cursor = CursorField()
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class JobPageSchema(Schema):
    items = fields.List(fields.Nested(JobSchema))
    next_cursor = fields.String(allow_none=True)


PARAMS_SCHEMAS = {"administration_counts": AdministrationCountsParamsSchema,
                  "dose_reconciliation": DoseReconciliationParamsSchema,
                  "dispense_reconciliation": DispenseReconciliationParamsSchema}


class DeadLetterSchema(Schema):
    """A dead letter as operators see it: ids and a PHI-free error only."""

    id = fields.String(metadata={"example": "0f8c2c51-6a39-4f7e-9a44-5b1f1f0c2d11"})
    task_name = fields.String(metadata={"example": "hub.io.run_job_unit"})
    job_id = fields.String()
    unit = fields.String(metadata={"example": "ICU-3"})
    attempts = fields.Integer(metadata={"example": 4})
    error = fields.String(metadata={"example": "DownstreamUnavailable: administration "
                                               "unavailable after 3 attempts (status 500)"})
    status = fields.String(metadata={"example": "open"})
    created_at = UtcTimestampField()
    replayed_at = UtcTimestampField(allow_none=True)
