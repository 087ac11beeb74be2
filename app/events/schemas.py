"""Shapes of ``/v1/subscriptions`` requests and answers."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.canonical.fields import NdcField, UnitCodeField
from app.canonical.parameters import StrictSchema
from app.events.destinations import MAX_URL_LENGTH
from app.events.types import EVENT_TYPES
from app.paging import CursorField

PAYLOADS = ("full", "notification")
DELIVERY_STATUSES = ("pending", "sending", "delivered", "dead_lettered", "refused")
_TIME = {"description": "UTC, RFC 3339.", "example": "2026-11-24T06:30:00Z"}


class FilterSchema(StrictSchema):
    unit = UnitCodeField(allow_none=True, metadata={
        "description": "Only events of this hospital unit.", "example": "ICU-3"})
    medication = NdcField(allow_none=True, metadata={
        "description": "Only events of this medication (an NDC in any common format, stored "
                       "as NDC-11).", "example": "95218036482"})


class SubscriptionRequestSchema(StrictSchema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=MAX_URL_LENGTH),
                        metadata={"description": "https URL the hub POSTs events to. It must "
                                                 "resolve to public addresses only.",
                                  "example": "https://pharmacy.example.org/hub-events"})
    event_types = fields.List(
        fields.String(validate=validate.OneOf(sorted(EVENT_TYPES))), required=True,
        validate=validate.Length(min=1, max=len(EVENT_TYPES)),
        metadata={"example": ["administration.recorded"]})
    filter = fields.Nested(FilterSchema, load_default=dict)
    payload = fields.String(load_default="full", validate=validate.OneOf(PAYLOADS), metadata={
        "description": "`full`: the event's record, as far as this client's scopes and PHI "
                       "policy allow (else the notification); `notification`: ids only, to "
                       "fetch details through the API."})


class SubscriptionFilterViewSchema(Schema):
    unit = fields.String(allow_none=True)
    medication = fields.String(allow_none=True)


class SubscriptionSchema(Schema):
    id = fields.String(metadata={"example": "2f7d3c1e-7f9e-4c36-8d5f-0c2b7b9d4a11"})
    url = fields.String()
    event_types = fields.List(fields.String())
    filter = fields.Nested(SubscriptionFilterViewSchema)
    payload = fields.String(metadata={"example": "full"})
    status = fields.String(metadata={"description": "active, or paused (see paused_reason).",
                                     "example": "active"})
    paused_reason = fields.String(allow_none=True, metadata={
        "description": "PHI-free: why deliveries stopped.",
        "example": "Paused after 50 consecutive failed delivery attempts. The last: The "
                   "receiver answered HTTP 503. Fix the receiver, then resume the "
                   "subscription; held deliveries are sent then."})
    paused_at = fields.String(allow_none=True, metadata=_TIME)
    consecutive_failures = fields.Integer()
    failed_attempts = fields.Integer()
    delivered = fields.Integer()
    dead_lettered = fields.Integer()
    pending = fields.Integer()
    refused = fields.Integer()
    created_at = fields.String(metadata=_TIME)
    created_by = fields.String(metadata={"example": "client:north-general-pharmacy"})


class CreatedSubscriptionSchema(SubscriptionSchema):
    secret = fields.String(metadata={
        "description": "The signing secret (Standard Webhooks). Shown only in this answer.",
        "example": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})


class SubscriptionListSchema(Schema):
    items = fields.List(fields.Nested(SubscriptionSchema))


class DeliveryQuerySchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES), metadata={
        "description": "`dead_lettered`: the subscription's dead letters."})
    cursor = CursorField()
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class DeliverySchema(Schema):
    """One event sent (or to be sent) to one subscription: ids, outcome and a PHI-free error."""

    id = fields.String()
    webhook_id = fields.String(metadata={"description": "The `webhook-id` header: the same on "
                                                        "every attempt and replay.",
                                         "example": "msg_6f1c0d7e0a8b4bb1b9b5a3e0f5f1d2c4"})
    event_id = fields.String()
    event_type = fields.String(metadata={"example": "administration.recorded"})
    status = fields.String(metadata={"description": ", ".join(DELIVERY_STATUSES) + ".",
                                     "example": "delivered"})
    payload = fields.String(allow_none=True, metadata={"description": "full or notification "
                                                                      "(as last sent)."})
    attempts = fields.Integer()
    last_status_code = fields.Integer(allow_none=True, metadata={"example": 200})
    last_error = fields.String(allow_none=True, metadata={
        "example": "The receiver answered HTTP 503."})
    created_at = fields.String(metadata=_TIME)
    last_attempt_at = fields.String(allow_none=True, metadata=_TIME)
    next_attempt_at = fields.String(allow_none=True, metadata=_TIME)
    delivered_at = fields.String(allow_none=True, metadata=_TIME)
    dead_lettered_at = fields.String(allow_none=True, metadata=_TIME)
    replayed_at = fields.String(allow_none=True, metadata=_TIME)


class DeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema))
    next_cursor = fields.String(allow_none=True)
