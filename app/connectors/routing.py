"""Routing: which system instance answers for a tenant and product, and how to call it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.connectors.base import ConnectionTarget
from app.connectors.credentials import CredentialUnavailable, resolve_credential
from app.connectors.registry import (
    Connector,
    UnknownConnector,
    connector_named,
    default_connector,
)
from app.connectors.resilience import CallPolicy, breaker_for
from app.settings import Settings
from app.tenants.models import Tenant
from app.tenants.service import get_active_connection


class NotConnected(LookupError):
    """The tenant owns the product but has no active connection to an instance of it (or the
    connection names a connector this process does not have installed)."""


def connection_connector(connection) -> Connector:
    """Return the connector that talks to ``connection``'s system: the one it names, else the
    hub's own connector of its product."""
    if connection.connector:
        return connector_named(connection.connector)
    return default_connector(connection.product.code)


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
    try:
        connector = connection_connector(connection)
    except UnknownConnector:
        raise NotConnected(product) from None
    policy = call_policy(settings)
    return ConnectionTarget(
        tenant=tenant, product=product, connector=connector, base_url=connection.base_url,
        credential=resolve_credential(connection.credential_ref, settings.hub_secrets_dir),
        timezone=connection.timezone, options=dict(connection.options or {}),
        breaker=breaker_for(f"{tenant}:{product}", redis_url=settings.redis_url, policy=policy),
        policy=policy)


@dataclass(frozen=True)
class ConnectionHealth:
    """The outcome of one connection's health check; ``error`` is an exception class name,
    never a message (messages can carry URLs and credentials)."""

    product: str
    connector: str
    ok: bool
    error: str | None = None


def connection_health(*, db_session: Session, settings: Settings, tenant: Tenant
                      ) -> list[ConnectionHealth]:
    """Run the health check of each of the tenant's active connections whose connector has
    one (a system that pushes to the hub has nothing to poll and is left out)."""
    results = []
    for connection in sorted((c for c in tenant.connections if c.is_active),
                             key=lambda c: c.product.code):
        product = connection.product.code
        try:
            target = connection_target(db_session=db_session, settings=settings,
                                       tenant_id=str(tenant.id), tenant=tenant.slug,
                                       product=product)
        except (NotConnected, CredentialUnavailable) as unusable:
            results.append(ConnectionHealth(product, connection.connector or "-", False,
                                            type(unusable).__name__))
            continue
        if target.connector.health is None:
            continue
        try:
            target.connector.health(target)
        except Exception as error:  # any failure means "unhealthy"; the class name says which
            results.append(ConnectionHealth(product, target.connector.name, False,
                                            type(error).__name__))
        else:
            results.append(ConnectionHealth(product, target.connector.name, True))
    return results


def connection_overview(*, db_session: Session, settings: Settings, tenant_id: str,
                        check: bool) -> list[dict]:
    """Return the tenant's active connections with what their connectors offer, and with
    ``check`` each one's health (None for a system that pushes to the hub)."""
    tenant = db_session.get(Tenant, uuid.UUID(tenant_id))
    health = {result.product: result for result in
              connection_health(db_session=db_session, settings=settings, tenant=tenant)
              } if check else {}
    overview = []
    for connection in sorted((c for c in tenant.connections if c.is_active),
                             key=lambda c: c.product.code):
        try:
            connector = connection_connector(connection)
        except UnknownConnector:
            overview.append({"product": connection.product.code,
                             "connector": connection.connector, "title": "not installed",
                             "transport": "-", "source": "-", "capabilities": [],
                             "events": [], "health": {"ok": False, "error": "NotConnected"}})
            continue
        result = health.get(connection.product.code)
        overview.append({"product": connection.product.code, "connector": connector.name,
                         "title": connector.title, "transport": connector.transport,
                         "source": connector.source,
                         "capabilities": sorted(connector.capabilities),
                         "events": list(connector.events),
                         "health": {"ok": result.ok, "error": result.error} if result else None})
    return overview
