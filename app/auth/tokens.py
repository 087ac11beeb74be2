"""Signed access tokens (JWT, HS256, PyJWT): issue and verify.

Several keys may be active at once (rotation): the first signs, every listed key verifies,
chosen by the token's ``kid`` header.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
# Clock skew tolerated between hub processes on different machines.
LEEWAY_SECONDS = 10
MIN_KEY_LENGTH = 32


class InvalidToken(Exception):
    """The bearer token cannot be trusted. ``reason`` is safe to show the caller."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SigningKeys:
    """The active signing key id and every key that verifies."""

    active_kid: str
    keys: dict[str, str]

    @classmethod
    def parse(cls, raw: str) -> SigningKeys:
        """Read ``kid:secret[,kid:secret…]``; the first pair signs."""
        pairs = [pair.strip() for pair in raw.split(",") if pair.strip()]
        keys: dict[str, str] = {}
        for pair in pairs:
            kid, sep, secret = pair.partition(":")
            if not sep or not kid or len(secret) < MIN_KEY_LENGTH:
                raise ValueError("HUB_JWT_SIGNING_KEYS entries are kid:secret with a secret of "
                                 f"at least {MIN_KEY_LENGTH} characters")
            keys[kid] = secret
        if not keys:
            raise ValueError("HUB_JWT_SIGNING_KEYS is empty")
        return cls(active_kid=pairs[0].partition(":")[0], keys=keys)


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says about its bearer."""

    tenant_id: str
    tenant: str
    client_id: str
    product: str | None
    scopes: frozenset[str]
    expires_at: int


def issue_token(*, keys: SigningKeys, issuer: str, audience: str, ttl_seconds: int,
                tenant_id: str, tenant: str, client_id: str, product: str | None,
                scopes: list[str]) -> str:
    """Return a signed access token for a client."""
    now = int(time.time())
    claims = {
        "iss": issuer, "aud": audience, "sub": client_id, "iat": now, "nbf": now,
        "exp": now + ttl_seconds, "jti": uuid.uuid4().hex,
        "tenant_id": tenant_id, "tenant": tenant, "client_id": client_id, "product": product,
        "scope": " ".join(scopes),
    }
    return jwt.encode(claims, keys.keys[keys.active_kid], algorithm=ALGORITHM,
                      headers={"kid": keys.active_kid})


def verify_token(token: str, *, keys: SigningKeys, issuer: str, audience: str) -> TokenClaims:
    """Check signature, expiry, audience, issuer and key id; return the claims."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.DecodeError:
        raise InvalidToken("malformed token") from None
    if kid not in keys.keys:
        raise InvalidToken("unknown signing key")
    try:
        claims = jwt.decode(
            token, keys.keys[kid], algorithms=[ALGORITHM], audience=audience, issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "aud", "iss", "sub", "tenant_id", "client_id"]})
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("token not meant for this API") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad signature") from None
    except jwt.PyJWTError:
        raise InvalidToken("invalid token") from None
    return TokenClaims(tenant_id=claims["tenant_id"], tenant=claims.get("tenant", ""),
                       client_id=claims["client_id"], product=claims.get("product"),
                       scopes=frozenset(claims.get("scope", "").split()),
                       expires_at=claims["exp"])
