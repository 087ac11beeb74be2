"""Machine clients: creation and secret handling.

Secrets are hashed with Argon2id (argon2-cffi): slow by design, so a leaked table does not
give the secrets away.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clients.models import Client
from app.database import utcnow
from app.tenants.models import Product, Tenant

_hasher = PasswordHasher()


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
