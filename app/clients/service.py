"""Machine clients: creation, secret handling, disabling, and the state the bearer check reads.

Secrets are hashed with Argon2id (argon2-cffi): slow by design, so a leaked table does not
give the secrets away.

A token outlives nothing about its client: every request's bearer check asks ``client_state``
whether the client (and its tenant) is still enabled and still what the token says. Each API
process remembers an answer for ``HUB_CLIENT_STATE_SECONDS`` (default 5), so disabling a client
takes effect everywhere within seconds. Why a short memory of the database rather than a Redis
list of disabled clients or a Redis "state version": the database stays the only authority
(a flushed or evicted Redis cannot bring a disabled client back, and a disable made by any path
— the CLI, a migration, SQL by hand — is seen without every writer having to remember to
notify), and the hot path costs one dictionary look-up, with one indexed query per client per
process every few seconds. The price, a few seconds' delay, is what the hub promises.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clients.models import Client
from app.database import utcnow
from app.tenants.models import Product, Tenant

_hasher = PasswordHasher()


@dataclass(frozen=True)
class ClientState:
    """What the bearer check needs to know about a client now."""

    enabled: bool  # the client and its tenant are both enabled
    tenant_id: str
    product: str | None


# client id → (monotonic time read, state or None for "no such client"). Only client ids from
# validly signed tokens are looked up, so this holds at most one entry per client.
_remembered: dict[str, tuple[float, ClientState | None]] = {}


def client_state(*, db_session: Session, client_id: str, memory_seconds: float
                 ) -> ClientState | None:
    """Return the client's current state (None if it no longer exists), remembered by this
    process for ``memory_seconds``."""
    now = time.monotonic()
    remembered = _remembered.get(client_id)
    if remembered is not None and now - remembered[0] < memory_seconds:
        return remembered[1]
    row = db_session.execute(
        select(Client.is_active, Tenant.is_active, Client.tenant_id, Product.code)
        .join(Tenant, Tenant.id == Client.tenant_id)
        .outerjoin(Product, Product.id == Client.product_id)
        .where(Client.client_id == client_id)).one_or_none()
    state = None if row is None else ClientState(
        enabled=bool(row[0] and row[1]), tenant_id=str(row[2]), product=row[3])
    _remembered[client_id] = (now, state)
    return state


def forget_client_states() -> None:
    """Drop this process's remembered client states (after a client or tenant changed)."""
    _remembered.clear()


def disable_client(*, db_session: Session, client: Client) -> None:
    """Disable ``client``: no new tokens, and its issued tokens stop working within
    ``HUB_CLIENT_STATE_SECONDS`` in every API process."""
    client.is_active = False
    db_session.flush()
    forget_client_states()


def new_client_secret() -> str:
    """Return a fresh client secret (shown once, never stored in clear)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """Return the Argon2id hash of ``secret``."""
    return _hasher.hash(secret)


def secret_matches(secret_hash: str, secret: str) -> bool:
    """Tell whether ``secret`` matches ``secret_hash``."""
    try:
        return _hasher.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def get_client(*, db_session: Session, client_id: str) -> Client | None:
    """Return the client with the public id ``client_id``, if any."""
    return db_session.scalar(select(Client).where(Client.client_id == client_id))


def ensure_client(*, db_session: Session, client_id: str, tenant: Tenant,
                  product: Product | None, name: str, scopes: list[str],
                  secret: str) -> Client:
    """Create or update a client whose secret is ``secret`` (hashed before it is stored)."""
    client = get_client(db_session=db_session, client_id=client_id)
    if client is None:
        client = Client(client_id=client_id, tenant_id=tenant.id)
        db_session.add(client)
        client.secret_hash = hash_secret(secret)
    elif not secret_matches(client.secret_hash, secret):
        client.secret_hash = hash_secret(secret)
        client.secret_rotated_at = utcnow()
    client.tenant_id = tenant.id
    client.product_id = product.id if product else None
    client.name = name
    client.scopes = " ".join(sorted(set(scopes)))
    client.is_active = True
    db_session.flush()
    forget_client_states()
    return client


def create_client(*, db_session: Session, client_id: str, tenant: Tenant,
                  product: Product | None, scopes: list[str]) -> tuple[Client, str]:
    """Create a client with a fresh secret; return it and the secret (shown once)."""
    if get_client(db_session=db_session, client_id=client_id) is not None:
        raise ValueError(f"client {client_id} already exists")
    secret = new_client_secret()
    client = ensure_client(db_session=db_session, client_id=client_id, tenant=tenant,
                           product=product, name=client_id, scopes=scopes, secret=secret)
    return client, secret


def rotate_secret(*, db_session: Session, client: Client) -> str:
    """Give ``client`` a new secret (the old one stops working at once); return it."""
    secret = new_client_secret()
    client.secret_hash = hash_secret(secret)
    client.secret_rotated_at = utcnow()
    db_session.flush()
    return secret
