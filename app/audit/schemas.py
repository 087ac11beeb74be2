"""Parameters and answers of ``GET /v1/audit-events``."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from app.audit.records import OUTCOMES
from app.canonical.fields import UtcDateTimeField
from app.paging import InvalidCursor, decode_cursor, encode_cursor

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


class AuditCursorField(fields.Field):
    """The opaque paging cursor: where the next page starts (an event's position, no filter
    values), as URL-safe base64 of a small JSON object."""

    def _serialize(self, value, attr, obj, **kwargs) -> str | None:
        return None if value is None else encode_cursor({"before": value})

    def _deserialize(self, value, attr, data, **kwargs) -> int:
        if not isinstance(value, str):
            raise ValidationError("not a cursor from this API")
        try:
            before = decode_cursor(value, expected_keys={"before"})["before"]
        except InvalidCursor as invalid:
            raise ValidationError(str(invalid)) from None
        if not isinstance(before, int) or isinstance(before, bool) or before < 1:
            raise ValidationError("not a cursor from this API")
        return before


class AuditEventQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    # No examples on the filters: the docs UI prefills them, and any fixed value (a date, a
    # request id) would narrow the trail to an empty page.
    since = UtcDateTimeField(metadata={"description": "Occurred at or after (with UTC offset)."})
    until = UtcDateTimeField(metadata={"description": "Occurred before (with UTC offset)."})
    operation = fields.String(validate=validate.Length(max=100), metadata={
        "description": "The API operation: its operationId (`lookups.list_administrations`)."})
    outcome = fields.String(validate=validate.OneOf(OUTCOMES), metadata={
        "description": "success (2xx/3xx), denied (401/403), rejected (other 4xx, including 429) "
                       "or error (5xx)."})
    resource_type = fields.String(validate=validate.Length(max=64))
    client_id = fields.String(validate=validate.Length(max=64))
    request_id = fields.String(validate=validate.Length(max=64))
    cursor = AuditCursorField(attribute="before_id", metadata={
        "type": "string", "description": "`next_cursor` of the previous page."})
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
    next_cursor = AuditCursorField(attribute="next_before_id", allow_none=True, metadata={
        "type": "string", "description": "Pass as `cursor` for the next (older) page; null on "
                                         "the last page.",
        "example": "eyJiZWZvcmUiOjEyMzR9"})
