"""Shapes of ``/v1/admin/syncs`` answers and changes."""

from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.canonical.parameters import StrictSchema

# Seconds, or crontab fields of digits, * / , - and day or month names: nothing else can reach
# the schedule parser (whose messages may quote what it could not read).
_SCHEDULE = validate.And(
    validate.Length(min=1, max=100),
    validate.Regexp(r"^(?:[0-9*/,\- ]|sun|mon|tue|wed|thu|fri|sat|jan|feb|mar|apr|may|jun|jul"
                    r"|aug|sep|oct|nov|dec)+$", re.ASCII | re.IGNORECASE,
                    error="seconds between runs, or a crontab of digits, * / , - and day or "
                          "month names"))
_TIME = {"description": "UTC, ISO 8601.", "example": "2026-11-24T06:30:00Z"}


class ScheduleSchema(Schema):
    spec = fields.String(metadata={"description": "Seconds between runs, or a crontab "
                                                  "(minute hour day month weekday, UTC).",
                                   "example": "300"})
    every_seconds = fields.Integer(metadata={"example": 300})
    crontab = fields.String(metadata={"example": "30 6 * * *"})
    customized = fields.Boolean(metadata={"description": "False: follows the hub's default "
                                                         "for this kind of sync."})


class SyncRunSchema(Schema):
    id = fields.String()
    outcome = fields.String(metadata={"description": "running, succeeded, failed or skipped "
                                                     "(the previous run was still going).",
                                      "example": "succeeded"})
    started_at = fields.String(metadata=_TIME)
    finished_at = fields.String(allow_none=True, metadata=_TIME)
    duration_seconds = fields.Float(allow_none=True, metadata={"example": 1.84})
    error = fields.String(allow_none=True, metadata={
        "description": "PHI-free.", "example": "The inventory system is unavailable (it timed "
                                               "out, failed, or its circuit breaker is open)."})
    report = fields.Dict(allow_none=True, metadata={
        "description": "Counts and ids of what the run did (hidden from tenants for hub-wide "
                       "syncs).", "example": {"containers": 5210, "movements_added": 12}})


class SyncSchema(Schema):
    id = fields.String(metadata={"example": "2f7d3c1e-7f9e-4c36-8d5f-0c2b7b9d4a11"})
    sync = fields.String(metadata={"example": "inventory_snapshot"})
    scope = fields.String(metadata={"description": "tenant, or hub (one for the whole hub)."})
    tenant = fields.String(allow_none=True, metadata={"example": "north-general"})
    description = fields.String()
    task = fields.String(metadata={"example": "hub.io.sync_inventory_snapshot"})
    schedule = fields.Nested(ScheduleSchema)
    enabled = fields.Boolean()
    status = fields.String(metadata={"description": "ok, failing, running, never_run or "
                                                    "disabled.", "example": "ok"})
    next_due_at = fields.String(allow_none=True, metadata=_TIME)
    last_run = fields.Nested(SyncRunSchema, allow_none=True)
    last_succeeded_at = fields.String(allow_none=True, metadata=_TIME)
    consecutive_failures = fields.Integer()
    skipped_runs = fields.Integer(metadata={"description": "Runs skipped because the "
                                                           "previous one was still going."})
    updated_at = fields.String(metadata=_TIME)
    updated_by = fields.String(allow_none=True)
    recent_runs = fields.List(fields.Nested(SyncRunSchema))


class SyncListSchema(Schema):
    items = fields.List(fields.Nested(SyncSchema))


class SyncChangeSchema(StrictSchema):
    schedule = fields.String(allow_none=True, validate=_SCHEDULE, metadata={
        "description": "Seconds between runs (at least HUB_SYNC_MIN_INTERVAL) or a crontab "
                       "in UTC; null returns to the hub's default.", "example": "600"})
    enabled = fields.Boolean(metadata={"example": False})

    @validates_schema
    def _something(self, data, **_kwargs):
        if not data:
            raise ValidationError("give schedule and/or enabled", field_name="_schema")


class SyncTriggeredSchema(Schema):
    id = fields.String()
    task_id = fields.String()
