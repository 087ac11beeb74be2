"""The one entitlement check every path goes through (lookups, jobs, syncs, events).

A read is allowed when the caller's token carries the resource's scope AND the caller's tenant
owns (has an unrevoked entitlement to) the product holding the resource. Both are checked
before any downstream call and before any PHI is touched.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.problems import Problem
from app.tenants.models import Entitlement, Product


@dataclass(frozen=True)
class ResourceAccess:
    """Which product holds a resource type, and which scope reads it."""

    product: str
    scope: str


RESOURCES = {
    "administrations": ResourceAccess(product="administration", scope="administrations:read"),
    "container_origin": ResourceAccess(product="inventory", scope="inventory:read"),
    "inventory": ResourceAccess(product="inventory", scope="inventory:read"),
}

# Entitlements change rarely and are read on every request: each process remembers an answer
# this long, so a revocation takes effect within this many seconds.
ENTITLEMENT_MEMORY_SECONDS = 10.0
_remembered: dict[tuple[str, str], tuple[float, bool]] = {}


def tenant_owns_product(*, db_session: Session, tenant_id: str, product: str) -> bool:
    """Tell whether the tenant has an unrevoked entitlement to ``product``."""
    key = (tenant_id, product)
    remembered = _remembered.get(key)
    if remembered and time.monotonic() - remembered[0] < ENTITLEMENT_MEMORY_SECONDS:
        return remembered[1]
    owned = db_session.scalar(
        select(Entitlement.id).join(Product, Product.id == Entitlement.product_id).where(
            Entitlement.tenant_id == uuid.UUID(tenant_id), Product.code == product,
            Entitlement.revoked_at.is_(None))) is not None
    _remembered[key] = (time.monotonic(), owned)
    return owned


def forget_entitlements() -> None:
    """Drop this process's remembered answers (after a grant or revocation)."""
    _remembered.clear()


def authorize_read(*, db_session: Session, tenant_id: str, scopes: frozenset[str],
                   resource_type: str) -> ResourceAccess:
    """Return how to reach ``resource_type`` if the caller may read it; raise a 403 ``Problem``
    (``insufficient-scope`` or ``not-entitled``)."""
    access = RESOURCES[resource_type]
    if access.scope not in scopes:
        raise Problem(f"This lookup needs the scope {access.scope}.",
                      problem_type="insufficient-scope")
    if not tenant_owns_product(db_session=db_session, tenant_id=tenant_id, product=access.product):
        raise Problem(f"This tenant is not entitled to the {access.product} product.",
                      problem_type="not-entitled")
    return access
