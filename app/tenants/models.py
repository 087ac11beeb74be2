"""Tables of tenants, products, connections and entitlements."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.database import Base, new_id, utcnow


class Tenant(Base):
    """A hospital customer of the hub (one site or health system)."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    connections: Mapped[list[Connection]] = relationship(back_populates="tenant")


class Product(Base):
    """A kind of hospital system the hub integrates: inventory, administration, pharmacy, …"""

    __tablename__ = "products"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(500), default="")


class Connection(Base):
    """A tenant's instance of a product: where it answers and which credential reaches it.

    ``credential_ref`` names a secret (``env:NAME`` or ``file:NAME`` under the secrets folder);
    the credential itself is never stored in the database.
    """

    __tablename__ = "connections"
    __table_args__ = (UniqueConstraint("tenant_id", "product_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"))
    # The registered connector (app.connectors.registry) that talks to this instance; None is
    # the hub's own connector of the product.
    connector: Mapped[str | None] = mapped_column(String(100), default=None)
    base_url: Mapped[str] = mapped_column(String(500))
    credential_ref: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Per-connection options (e.g. code maps for unit codes) the connector reads.
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tenant: Mapped[Tenant] = relationship(back_populates="connections")
    product: Mapped[Product] = relationship()


class Entitlement(Base):
    """A tenant's ownership of a product; the hub reads a product's data only when it exists."""

    __tablename__ = "entitlements"
    __table_args__ = (UniqueConstraint("tenant_id", "product_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    product: Mapped[Product] = relationship()
