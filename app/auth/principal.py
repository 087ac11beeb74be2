"""Who is calling: the bearer token of every ``/v1`` request, verified before any view runs."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, g, request
from sqlalchemy.exc import DBAPIError

from app.auth.tokens import InvalidToken, TokenClaims, verify_token
from app.clients.service import client_state
from app.entitlements.service import RESOURCES, authorize_read, missing_scopes
from app.observability.context import tenant_var
from app.problems import problem_response

REALM = "medication-hub"
# Paths under /v1 reachable without a bearer token.
PUBLIC_PATHS = frozenset({"/v1/oauth/token"})


@dataclass(frozen=True)
class Principal:
    """The authenticated client of the current request."""

    tenant_id: str
    tenant: str
    client_id: str
    product: str | None
    scopes: frozenset[str]

    @property
    def consumer(self) -> str:
        """The PHI-policy consumer this client is: its product, or ``operator``."""
        return self.product or "operator"

    @classmethod
    def from_claims(cls, claims: TokenClaims) -> Principal:
        return cls(tenant_id=claims.tenant_id, tenant=claims.tenant, client_id=claims.client_id,
                   product=claims.product, scopes=claims.scopes)


def current_principal() -> Principal:
    """Return the caller of the current request (set by the bearer check)."""
    return g.principal


def _unauthorized(detail: str, error: str | None = None):
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}", error_description="{detail}"'
    return problem_response(401, detail=detail, headers={"WWW-Authenticate": challenge})


def init_bearer_auth(app: Flask) -> None:
    """Require a valid bearer token on every ``/v1`` request except the token endpoint."""

    @app.before_request
    def _authenticate():
        if not request.path.startswith("/v1/") or request.path in PUBLIC_PATHS:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorized("A bearer token is required.")
        hub = current_app.extensions["hub"]
        try:
            claims = verify_token(token.strip(), keys=hub.signing_keys,
                                  issuer=hub.settings.hub_jwt_issuer,
                                  audience=hub.settings.hub_jwt_audience)
        except InvalidToken as invalid:
            return _unauthorized(f"The bearer token is not valid: {invalid.reason}.",
                                 "invalid_token")
        try:
            state = client_state(db_session=hub.database.session, client_id=claims.client_id,
                                 memory_seconds=hub.settings.hub_client_state_seconds)
        except DBAPIError:
            # Fail closed: without the client's state a disabled client cannot be told from
            # an enabled one, and the database holding it is what every /v1 call needs anyway.
            return problem_response(503, detail="Client state cannot be checked right now; "
                                                "retry shortly.",
                                    problem_type="database-unavailable",
                                    headers={"Retry-After": "5"})
        if state is None or not state.enabled or state.tenant_id != claims.tenant_id \
                or state.product != claims.product:
            return _unauthorized("The bearer token is not valid: the client is disabled or "
                                 "has changed.", "invalid_token")
        g.principal = Principal.from_claims(claims)
        tenant_var.set(claims.tenant)
        return None


def requires_scopes(*scopes: str):
    """Declare the scopes a view needs; ``init_scope_check`` enforces them before the view's
    arguments are parsed, and the OpenAPI document lists them as its security requirement."""

    def declare(view):
        view.required_scopes = frozenset(scopes)
        return view

    return declare


def _insufficient_scope(needed: frozenset[str], missing: set[str]):
    return problem_response(
        403, problem_type="insufficient-scope",
        detail=f"This operation needs the scope {' '.join(sorted(missing))}.",
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", '
                                     f'scope="{" ".join(sorted(needed))}"'})


def init_scope_check(app: Flask) -> None:
    """Answer 403 ``insufficient_scope`` unless the token carries every scope the matched view
    declares (``requires_scopes``).

    It runs as a request hook, after the bearer check and the rate limits and before the view:
    flask-smorest parses query and body inside the view call, so a client without the scope
    is told 403, never 422 about a body it may not send. A ``/v1`` view that declares no scope
    is refused (fail closed).
    """

    @app.before_request
    def _authorize():
        if not request.path.startswith("/v1/") or request.path in PUBLIC_PATHS:
            return None
        view = app.view_functions.get(request.endpoint) if request.endpoint else None
        if view is None:
            return None  # no such route: the 404 or 405 follows
        if g.get("principal") is None:
            # The bearer check answers first; should it ever not have, no view runs unknown.
            return _unauthorized("A bearer token is required.")
        needed = getattr(view, "required_scopes", None)
        if not needed:
            return problem_response(403, problem_type="insufficient-scope",
                                    detail="This operation declares no scope.")
        missing = missing_scopes(current_principal().scopes, needed)
        if missing:
            return _insufficient_scope(needed, missing)
        # A lookup's product is known from the route alone: the tenant's entitlement to it is
        # checked here too, so an unentitled tenant hears 403 before its parameters are read.
        resource_type = getattr(view, "audit_resource_type", None)
        if resource_type in RESOURCES:
            principal = current_principal()
            authorize_read(db_session=current_app.extensions["hub"].database.session,
                           tenant_id=principal.tenant_id, scopes=principal.scopes,
                           resource_type=resource_type)
        return None
