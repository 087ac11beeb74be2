"""``POST /v1/oauth/token``: the client-credentials grant."""

from __future__ import annotations

from flask import jsonify, request
from flask_smorest import Blueprint

from app.auth.principal import REALM
from app.auth.schemas import OAuthErrorSchema, TokenRequestSchema, TokenResponseSchema
from app.auth.service import OAuthError, client_credentials_grant, presented_credentials
from app.extensions import resources
from app.observability.context import request_id_var

blp = Blueprint("oauth", __name__, url_prefix="/v1/oauth",
                description="OAuth2 client credentials: exchange a client secret for a "
                            "short-lived bearer token.")

# RFC 6749 §5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@blp.errorhandler(OAuthError)
def _oauth_error(error: OAuthError):
    response = jsonify(error=error.error, error_description=error.description,
                       request_id=request_id_var.get())
    response.status_code = error.status
    response.headers.update(NO_STORE)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    return response


@blp.post("/token")
@blp.arguments(TokenRequestSchema, location="form")
@blp.response(200, TokenResponseSchema, headers=None)
@blp.alt_response(400, schema=OAuthErrorSchema, description="invalid_request (also: client "
                  "credentials both in HTTP Basic and in the body), invalid_scope or "
                  "unsupported_grant_type (RFC 6749 §5.2).")
@blp.alt_response(401, schema=OAuthErrorSchema, description="invalid_client.")
def issue_token(form: dict):
    """Issue a bearer token (JWT, at most 15 minutes) for a client's scopes.

    Authenticate with `client_id` and `client_secret` in the form body or with HTTP Basic,
    not both. Failed attempts are limited per client id and per address (429).
    """
    hub = resources()
    settings = hub.settings
    issued = client_credentials_grant(
        db_session=hub.database.session, grant_type=form.get("grant_type"),
        credentials=presented_credentials(form=form, authorization=request.authorization),
        scope=form.get("scope"),
        keys=hub.signing_keys, issuer=settings.hub_jwt_issuer,
        audience=settings.hub_jwt_audience, ttl_seconds=settings.hub_token_ttl)
    return issued, 200, NO_STORE
