"""Signed access tokens (JWT, HS256, PyJWT): issue and verify.

Several keys may be active at once (rotation): the first signs, every listed key verifies,
chosen by the token's ``kid`` header.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from app.settings import MAX_TOKEN_TTL

ALGORITHM = "HS256"
# Clock skew tolerated between hub processes on different machines.
LEEWAY_SECONDS = 10
MIN_KEY_LENGTH = 32

# Scopes the hub knows. A client is granted a subset; a token carries a subset of that.
KNOWN_SCOPES = frozenset({"administrations:read", "inventory:read", "jobs:read", "jobs:write",
                          "audit:read", "admin", "hl7:write"})
# Client ids, tenant slugs and product codes: ASCII letters, digits, ``.``, ``_``, ``-``, at most
# 64 characters (their column width), starting with a letter or digit.
ID_GRAMMAR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Header parameters a hub token may carry. Anything else (``crit``, ``b64``, ``jku``, ``jwk``,
# ``x5u``…) asks the verifier for behaviour the hub does not implement, so it is refused.
_ALLOWED_HEADER = frozenset({"alg", "typ", "kid"})
# Claims every hub token carries with a non-null value (``product`` is present but may be null).
_REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "tenant_id", "tenant",
                    "client_id", "scope")


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
    """Check header, signature, expiry, audience, issuer and every claim's type; return the
    claims. Any token that is not exactly what the hub issues raises ``InvalidToken``."""
    try:
        kid = _signing_key_id(token)
        if kid not in keys.keys:
            raise InvalidToken("unknown signing key")
        claims = jwt.decode(
            token, keys.keys[kid], algorithms=[ALGORITHM], audience=audience, issuer=issuer,
            leeway=LEEWAY_SECONDS, options={"require": list(_REQUIRED_CLAIMS)})
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("token not meant for this API") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad signature") from None
    except jwt.PyJWTError:
        raise InvalidToken("invalid token") from None
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        # The token is attacker-controlled bytes decoded by a library: whatever it trips on
        # (a nested JSON thousands of levels deep, a value of an unexpected type) means the
        # token is unusable, never that the hub failed.
        raise InvalidToken("malformed token") from None
    return _typed_claims(claims)


def _signing_key_id(token: str) -> str:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("malformed token") from None
    if set(header) - _ALLOWED_HEADER or header.get("alg") != ALGORITHM:
        raise InvalidToken("unsupported token header")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise InvalidToken("unknown signing key")
    return kid


def _typed_claims(claims: dict[str, Any]) -> TokenClaims:
    """Refuse a signed token whose claims do not have the types and bounds the hub issues."""
    times = [claims[name] for name in ("iat", "nbf", "exp")]
    # bool is an int to Python, and PyJWT accepts floats: neither is what the hub issues.
    if not all(type(value) is int for value in times):
        raise InvalidToken("invalid claims")
    iat, _nbf, exp = times
    # A validly signed token living longer than HUB_TOKEN_TTL may was not issued by the hub's
    # rules (a leaked key, a test key in production): refused rather than trusted for longer.
    if not 0 < exp - iat <= MAX_TOKEN_TTL:
        raise InvalidToken("token lifetime out of bounds")
    if "product" not in claims:
        raise InvalidToken("invalid claims")
    client_id, tenant, product = claims["client_id"], claims["tenant"], claims["product"]
    if not (_is_id(client_id) and claims["sub"] == client_id and _is_id(tenant)
            and (product is None or _is_id(product)) and _is_uuid(claims["tenant_id"])
            and isinstance(claims["jti"], str) and 0 < len(claims["jti"]) <= 64
            and isinstance(claims["scope"], str)):
        raise InvalidToken("invalid claims")
    scopes = frozenset(claims["scope"].split(" ")) - {""}
    if not scopes <= KNOWN_SCOPES:
        raise InvalidToken("invalid claims")
    return TokenClaims(tenant_id=claims["tenant_id"], tenant=tenant, client_id=client_id,
                       product=product, scopes=scopes, expires_at=exp)


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and ID_GRAMMAR.fullmatch(value) is not None


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
