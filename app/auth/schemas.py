"""Shapes of the token endpoint (RFC 6749 §4.4 and §5)."""

from marshmallow import EXCLUDE, Schema, fields


class TokenRequestSchema(Schema):
    """Form body of ``POST /v1/oauth/token``. Every field is optional here: a missing one is an
    RFC 6749 error (``invalid_request`` / ``invalid_client``), not a generic 422."""

    class Meta:
        unknown = EXCLUDE

    grant_type = fields.String(metadata={"example": "client_credentials"})
    client_id = fields.String(metadata={"description": "Or use HTTP Basic authentication.",
                                        "example": "north-general-inventory"})
    client_secret = fields.String(metadata={"description": "Or use HTTP Basic authentication."})
    # No example: a prefilled scope that the client filled in does not hold is invalid_scope.
    scope = fields.String(metadata={"description": "Space-separated; default: every scope "
                                                   "granted to the client."})


class TokenResponseSchema(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"example": 900})
    scope = fields.String(required=True, metadata={"example": "administrations:read"})


class OAuthErrorSchema(Schema):
    error = fields.String(required=True, metadata={"example": "invalid_client"})
    error_description = fields.String()
    request_id = fields.String()
