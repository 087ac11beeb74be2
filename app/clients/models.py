"""Table of machine clients."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.database import Base, new_id, utcnow
from app.tenants.models import Product, Tenant


class Client(Base):
    """A machine credential: one hospital system of one tenant calling the hub.

    Only a slow hash of the secret is stored (``secret_hash``); the secret is shown once when
    the client is created or its secret rotated.
    """

    __tablename__ = "clients"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # The product (system) this client is; None for a tenant's operator clients (admin tools).
    product_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("products.id"))
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(200))
    # Space-separated OAuth2 scopes, as RFC 6749 writes them.
    scopes: Mapped[str] = mapped_column(String(500), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    secret_rotated_at: Mapped[datetime] = mapped_column(default=utcnow)

    tenant: Mapped[Tenant] = relationship()
    product: Mapped[Product | None] = relationship()
