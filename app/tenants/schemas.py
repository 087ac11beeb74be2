"""Shapes of the connection overview operators read at ``/v1/admin/connections``."""

from __future__ import annotations

from marshmallow import Schema, fields

from app.canonical.parameters import StrictSchema


class ConnectionsQuerySchema(StrictSchema):
    check = fields.Boolean(load_default=False, metadata={
        "description": "Also run each connection's health check (one cheap call to each "
                       "system the hub pulls from)."})


class ConnectionHealthSchema(Schema):
    ok = fields.Boolean()
    error = fields.String(allow_none=True, metadata={
        "description": "The class of the failure (never a message, which can carry URLs)."})


class ConnectionOverviewSchema(Schema):
    product = fields.String(metadata={"example": "administration"})
    connector = fields.String(metadata={"example": "emar-rest"})
    title = fields.String()
    transport = fields.String(metadata={"example": "http-pull"})
    source = fields.String(metadata={"description": "`hub` for the hub's own connectors, the "
                                                    "distribution and version of a plug-in."})
    capabilities = fields.List(fields.String())
    events = fields.List(fields.String())
    health = fields.Nested(ConnectionHealthSchema, allow_none=True, metadata={
        "description": "Null unless `check=true`, and for systems that push to the hub."})


class ConnectionListSchema(Schema):
    items = fields.List(fields.Nested(ConnectionOverviewSchema))
