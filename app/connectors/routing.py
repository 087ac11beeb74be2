"""Routing: which system instance answers for a tenant and product, and how to call it."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.connectors.base import ConnectionTarget
from app.connectors.credentials import resolve_credential
from app.connectors.resilience import CallPolicy, breaker_for
from app.settings import Settings
from app.tenants.service import get_active_connection


class NotConnected(LookupError):
    """The tenant owns the product but has no active connection to an instance of it."""


def call_policy(settings: Settings) -> CallPolicy:
    """Return the downstream call policy the settings describe."""
    return CallPolicy(connect_timeout=settings.hub_downstream_connect_timeout,
                      read_timeout=settings.hub_downstream_read_timeout,
                      attempts=settings.hub_downstream_attempts,
                      breaker_failures=settings.hub_breaker_failures,
                      breaker_reset_seconds=settings.hub_breaker_reset_seconds)


def connection_target(*, db_session: Session, settings: Settings, tenant_id: str, tenant: str,
                      product: str) -> ConnectionTarget:
    """Return the ready-to-call connection of ``tenant`` to its ``product`` instance."""
    connection = get_active_connection(db_session=db_session, tenant_id=uuid.UUID(tenant_id),
                                       product=product)
    if connection is None:
        raise NotConnected(product)
    policy = call_policy(settings)
    return ConnectionTarget(
        tenant=tenant, product=product, base_url=connection.base_url,
        credential=resolve_credential(connection.credential_ref, settings.hub_secrets_dir),
        timezone=connection.timezone, options=dict(connection.options or {}),
        breaker=breaker_for(f"{tenant}:{product}", redis_url=settings.redis_url, policy=policy),
        policy=policy)
