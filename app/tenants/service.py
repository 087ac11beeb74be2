"""Onboarding of tenants: their products and connections (entitlements: app.entitlements)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.connectors.registry import connector_named, default_connector, products
from app.tenants.models import Connection, Product, Tenant


class UnknownProduct(LookupError):
    """No product has this code."""


def get_product(*, db_session: Session, code: str) -> Product:
    """Return the product with ``code`` (inventory, administration, pharmacy, or one a
    plug-in connector implements: its row is added the first time it is asked for)."""
    product = db_session.scalar(select(Product).where(Product.code == code))
    if product is None:
        title = products().get(code)
        if title is None:
            raise UnknownProduct(code)
        product = Product(code=code, name=title,
                          description="Implemented by a connector plug-in.")
        db_session.add(product)
        db_session.flush()
    return product


def get_tenant_by_slug(*, db_session: Session, slug: str) -> Tenant | None:
    """Return the tenant with ``slug``, if any."""
    return db_session.scalar(select(Tenant).where(Tenant.slug == slug))


def ensure_tenant(*, db_session: Session, slug: str, name: str) -> Tenant:
    """Return the tenant with ``slug``, creating it (or updating its name) as needed."""
    tenant = get_tenant_by_slug(db_session=db_session, slug=slug)
    if tenant is None:
        tenant = Tenant(slug=slug, name=name)
        db_session.add(tenant)
    else:
        tenant.name = name
    db_session.flush()
    return tenant


class ConnectorMismatch(ValueError):
    """The named connector implements another product than the connection's."""


def ensure_connection(*, db_session: Session, tenant: Tenant, product: Product, base_url: str,
                      credential_ref: str, timezone: str = "UTC", options: dict | None = None,
                      connector: str | None = None) -> Connection:
    """Create or update the tenant's connection to its instance of ``product``, talked to by
    ``connector`` (a registered connector's name; None: the hub's own connector of the
    product). The options are checked against the connector's options schema first, so a
    connection is never stored with options its connector cannot use.

    Raises ``UnknownConnector``, ``ConnectorMismatch`` or ``InvalidConnectionOptions``."""
    talker = connector_named(connector) if connector else default_connector(product.code)
    if talker.product != product.code:
        raise ConnectorMismatch(f"connector {talker.name} implements {talker.product}, "
                                f"not {product.code}")
    checked_options = talker.checked_options(options)
    if talker.transport == "http-pull" and not base_url.strip():
        raise ValueError("a connection pulled over HTTP needs a base URL")
    connection = db_session.scalar(select(Connection).where(
        Connection.tenant_id == tenant.id, Connection.product_id == product.id))
    if connection is None:
        connection = Connection(tenant_id=tenant.id, product_id=product.id)
        db_session.add(connection)
    connection.connector = connector
    connection.base_url = base_url.rstrip("/")
    connection.credential_ref = credential_ref
    connection.timezone = timezone
    connection.options = checked_options
    connection.is_active = True
    db_session.flush()
    return connection


def get_active_connection(*, db_session: Session, tenant_id: uuid.UUID, product: str
                          ) -> Connection | None:
    """Return the tenant's active connection to its instance of ``product``, if any."""
    return db_session.scalar(
        select(Connection).join(Product, Product.id == Connection.product_id).where(
            Connection.tenant_id == tenant_id, Product.code == product,
            Connection.is_active.is_(True)))


def list_tenants(*, db_session: Session) -> list[Tenant]:
    """Return every tenant, by slug."""
    return list(db_session.scalars(select(Tenant).order_by(Tenant.slug)))
