"""The OAuth2 client-credentials grant (RFC 6749 §4.4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session
from werkzeug.datastructures import Authorization

from app.auth.tokens import KNOWN_SCOPES, SigningKeys, issue_token
from app.clients.service import get_client, hash_secret, secret_matches

__all__ = ["KNOWN_SCOPES", "IssuedToken", "OAuthError", "PresentedCredentials",
           "client_credentials_grant", "presented_credentials"]
# Verified against when the client id is unknown, so a wrong id costs as long as a wrong
# secret and client ids cannot be discovered by timing.
_DECOY_HASH = hash_secret("decoy-secret-for-unknown-clients")


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: ``error`` code, description, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"


@dataclass(frozen=True)
class PresentedCredentials:
    """The client credentials a token request carries, and whether it carries two sets."""

    client_id: str | None
    client_secret: str | None
    in_basic_and_body: bool = False


def presented_credentials(*, form: Mapping[str, str], authorization: Authorization | None
                          ) -> PresentedCredentials:
    """Return the client credentials of a token request: HTTP Basic if sent, else the body."""
    if authorization is not None and authorization.type == "basic":
        in_body = "client_id" in form or "client_secret" in form
        return PresentedCredentials(authorization.username, authorization.password, in_body)
    return PresentedCredentials(form.get("client_id"), form.get("client_secret"))


def client_credentials_grant(*, db_session: Session, grant_type: str | None,
                             credentials: PresentedCredentials, scope: str | None,
                             keys: SigningKeys, issuer: str, audience: str,
                             ttl_seconds: int) -> IssuedToken:
    """Authenticate a client by its secret and issue a token for the requested scopes."""
    if credentials.in_basic_and_body:
        # RFC 6749 §2.3.1: one authentication method per request. Taking either set would let
        # a caller pair one client's Basic credentials with any body client id.
        raise OAuthError("invalid_request", "send client credentials either with HTTP Basic "
                                            "or in the body, not both")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        raise OAuthError("unsupported_grant_type", "only client_credentials is supported")
    client_id, client_secret = credentials.client_id, credentials.client_secret
    if not client_id or not client_secret:
        raise OAuthError("invalid_client", "client authentication failed", 401)

    client = get_client(db_session=db_session, client_id=client_id)
    if client is None:
        secret_matches(_DECOY_HASH, client_secret)
        raise OAuthError("invalid_client", "client authentication failed", 401)
    if not secret_matches(client.secret_hash, client_secret) or not client.is_active \
            or not client.tenant.is_active:
        raise OAuthError("invalid_client", "client authentication failed", 401)

    granted = set(client.scopes.split())
    requested = set(scope.split()) if scope else granted
    if not requested <= granted or not requested <= KNOWN_SCOPES:
        raise OAuthError("invalid_scope", "the requested scope is not granted to this client")

    scopes = sorted(requested)
    token = issue_token(keys=keys, issuer=issuer, audience=audience, ttl_seconds=ttl_seconds,
                        tenant_id=str(client.tenant_id), tenant=client.tenant.slug,
                        client_id=client.client_id,
                        product=client.product.code if client.product else None, scopes=scopes)
    return IssuedToken(access_token=token, expires_in=ttl_seconds, scope=" ".join(scopes))
