"""Shapes of the health answers."""

from marshmallow import Schema, fields


class CheckSchema(Schema):
    ok = fields.Boolean(required=True)
    latency_ms = fields.Float(required=True)
    error = fields.String(allow_none=True, metadata={"description": "Exception class name."})


class LivenessSchema(Schema):
    status = fields.String(required=True, metadata={"example": "alive"})


class ReadinessSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ready"})
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema), required=True)
