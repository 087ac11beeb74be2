"""Parameters and answers of ``GET /v1/audit-events``."""

from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.audit.records import OUTCOMES
from app.canonical.fields import UtcDateTimeField
from app.canonical.parameters import StrictSchema
from app.paging import CursorField

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
# Operations are blueprint.view names; resource types are snake_case words.
_OPERATION = validate.Regexp(r"^[a-z][a-z0-9_]{0,49}(\.[a-z][a-z0-9_]{0,49})?$", re.ASCII,
                             error="an operation name (blueprint.view)")
_RESOURCE_TYPE = validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$", re.ASCII,
                                 error="a resource type (lower-case letters, digits, _)")
# The grammar request ids are accepted in (app.observability.context); client ids fit it too.
_CLIENT_OR_REQUEST_ID = validate.Regexp(r"^[A-Za-z0-9._:-]{1,64}$", re.ASCII,
                                        error="1 to 64 ASCII letters, digits, '.', '_', ':' "
                                              "or '-'")


class AuditEventQuerySchema(StrictSchema):
    # No examples on the filters: the docs UI prefills them, and any fixed value (a date, a
    # request id) would narrow the trail to an empty page.
    since = UtcDateTimeField(metadata={"description": "Occurred at or after (with UTC offset)."})
    until = UtcDateTimeField(metadata={"description": "Occurred before (with UTC offset)."})
    operation = fields.String(validate=_OPERATION, metadata={
        "description": "The API operation: its operationId (`lookups.list_administrations`)."})
    outcome = fields.String(validate=validate.OneOf(OUTCOMES), metadata={
        "description": "success (2xx/3xx), denied (401/403), rejected (other 4xx, including 429) "
                       "or error (5xx)."})
    resource_type = fields.String(validate=_RESOURCE_TYPE)
    client_id = fields.String(validate=_CLIENT_OR_REQUEST_ID)
    request_id = fields.String(validate=_CLIENT_OR_REQUEST_ID)
    cursor = CursorField()
    page_size = fields.Integer(load_default=DEFAULT_PAGE_SIZE,
                               validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
                               metadata={"description": f"At most {MAX_PAGE_SIZE}."})

    @validates_schema
    def _window_in_order(self, data, **_kwargs):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ValidationError("must be after since", field_name="until")


class AuditEventSchema(Schema):
    """One audited request: who, what, how it ended. Never patient data, query strings or
    bodies."""

    event_id = fields.String(metadata={"example": "9b2f6a0e-3c1d-4f5e-8a7b-6c5d4e3f2a1b"})
    occurred_at = fields.DateTime(format="iso", metadata={"example": "2026-11-24T09:41:07.123456+00:00"})
    request_id = fields.String(metadata={"example": "4f1c2b7e9a0d4e5f8a6b3c2d1e0f9a8b"})
    tenant_id = fields.String(allow_none=True,
                              metadata={"example": "0c4a1f9e-7d2b-4e8a-9f3c-5b6d7e8f9a0b"})
    client_id = fields.String(allow_none=True, metadata={"example": "north-general-emar"})
    operation = fields.String(metadata={"example": "lookups.list_administrations"})
    resource_type = fields.String(allow_none=True, metadata={"example": "administrations"})
    target_system = fields.String(allow_none=True, metadata={"example": "administration"})
    outcome = fields.String(metadata={"example": "success"})
    status_code = fields.Integer(allow_none=True, metadata={"example": 200})
    latency_ms = fields.Integer(allow_none=True, metadata={"example": 14})


class AuditEventPageSchema(Schema):
    items = fields.List(fields.Nested(AuditEventSchema), attribute="events")
    next_cursor = fields.String(allow_none=True, metadata={
        "description": "Pass as `cursor` for the next (older) page; null on the last page.",
        "example": "eyJiZWZvcmUiOjEyMzR9.q3Jd0n1wH6c4mB2x9yZ8aT5uK7vL0pQ1rS2tU3vW4xY"})
