"""The one entitlement gate every path goes through (lookups, jobs, dead-letter replay, syncs).

A tenant's client may use a product when the tenant owns it (an unrevoked entitlement) and the
client is still enabled; a lookup also needs the resource's scope on the token. The gate runs
at the API before any downstream call, again in the worker before each job unit reads a
hospital system, and when a dead letter is replayed: a revocation (or a disabled client) stops
work already queued, not only new requests. Granting and revoking live here too, so the
per-process memory of answers is dropped where the answers change.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clients.models import Client
from app.database import utcnow
from app.problems import Problem
from app.tenants.models import Entitlement, Product, Tenant


@dataclass(frozen=True)
class ResourceAccess:
    """Which product holds a resource type, and which scope reads it."""

    product: str
    scope: str


RESOURCES = {
    "administrations": ResourceAccess(product="administration", scope="administrations:read"),
    "container_origin": ResourceAccess(product="inventory", scope="inventory:read"),
    "inventory": ResourceAccess(product="inventory", scope="inventory:read"),
    "dispenses": ResourceAccess(product="pharmacy", scope="dispenses:read"),
}

# Entitlements change rarely and are read on every request: each process remembers an answer
# this long, so a revocation takes effect at the API within this many seconds (at once in the
# process that made it). Workers ask with remembered=False: a job's next unit sees it at once.
ENTITLEMENT_MEMORY_SECONDS = 10.0
_remembered: dict[tuple[str, str], tuple[float, bool]] = {}


def missing_scopes(granted: Iterable[str], needed: Iterable[str]) -> set[str]:
    """Return the scopes of ``needed`` that ``granted`` lacks (the one scope check)."""
    return set(needed) - set(granted)


def tenant_owns_product(*, db_session: Session, tenant_id: str, product: str,
                        remembered: bool = True) -> bool:
    """Tell whether the tenant has an unrevoked entitlement to ``product``.

    With ``remembered`` False the database is asked even when this process remembers an
    answer (and the memory is refreshed)."""
    key = (tenant_id, product)
    memory = _remembered.get(key)
    if remembered and memory and time.monotonic() - memory[0] < ENTITLEMENT_MEMORY_SECONDS:
        return memory[1]
    owned = db_session.scalar(
        select(Entitlement.id).join(Product, Product.id == Entitlement.product_id).where(
            Entitlement.tenant_id == uuid.UUID(tenant_id), Product.code == product,
            Entitlement.revoked_at.is_(None))) is not None
    _remembered[key] = (time.monotonic(), owned)
    return owned


def forget_entitlements() -> None:
    """Drop this process's remembered answers (after a grant or revocation)."""
    _remembered.clear()


def entitlement_refusal(*, db_session: Session, tenant_id: str, products: Iterable[str],
                        client_pk: uuid.UUID | None = None, remembered: bool = True
                        ) -> Problem | None:
    """Return why the tenant's client may not use ``products`` (a 403 ``Problem``), or None.

    The tenant must own every one of ``products``; when ``client_pk`` is given (the client that
    submitted a job), that client and its tenant must still be enabled. The details name the
    product or say the client is disabled; they carry no PHI."""
    if client_pk is not None:
        enabled = db_session.scalar(
            select(Client.is_active).join(Tenant, Tenant.id == Client.tenant_id).where(
                Client.id == client_pk, Client.tenant_id == uuid.UUID(tenant_id),
                Tenant.is_active.is_(True)))
        if not enabled:
            return Problem("The client that made this request has been disabled.",
                           status=403, problem_type="client-disabled")
    for product in products:
        if not tenant_owns_product(db_session=db_session, tenant_id=tenant_id, product=product,
                                   remembered=remembered):
            return Problem(f"This tenant is not entitled to the {product} product.",
                           status=403, problem_type="not-entitled")
    return None


def require_entitlement(*, db_session: Session, tenant_id: str, products: Iterable[str],
                        client_pk: uuid.UUID | None = None, remembered: bool = True) -> None:
    """Raise the 403 ``Problem`` of :func:`entitlement_refusal`, if there is one."""
    refusal = entitlement_refusal(db_session=db_session, tenant_id=tenant_id, products=products,
                                  client_pk=client_pk, remembered=remembered)
    if refusal is not None:
        raise refusal


def authorize_read(*, db_session: Session, tenant_id: str, scopes: frozenset[str],
                   resource_type: str) -> ResourceAccess:
    """Return how to reach ``resource_type`` if the caller may read it; raise a 403
    ``Problem``."""
    access = RESOURCES[resource_type]
    if missing_scopes(scopes, {access.scope}):
        raise Problem(f"This lookup needs the scope {access.scope}.", status=403,
                      problem_type="insufficient-scope")
    require_entitlement(db_session=db_session, tenant_id=tenant_id, products=(access.product,))
    return access


def grant_entitlement(*, db_session: Session, tenant: Tenant, product: Product) -> Entitlement:
    """Record that ``tenant`` owns ``product`` (re-granting a revoked entitlement)."""
    entitlement = db_session.scalar(select(Entitlement).where(
        Entitlement.tenant_id == tenant.id, Entitlement.product_id == product.id))
    if entitlement is None:
        entitlement = Entitlement(tenant_id=tenant.id, product_id=product.id)
        db_session.add(entitlement)
    elif entitlement.revoked_at is not None:
        entitlement.revoked_at = None
        entitlement.granted_at = utcnow()
    db_session.flush()
    forget_entitlements()
    return entitlement


def revoke_entitlement(*, db_session: Session, tenant: Tenant, product: Product) -> bool:
    """Revoke ``tenant``'s entitlement to ``product``; return False if it had none.

    The caller commits; work already queued is refused from its next unit on."""
    entitlement = db_session.scalar(select(Entitlement).where(
        Entitlement.tenant_id == tenant.id, Entitlement.product_id == product.id,
        Entitlement.revoked_at.is_(None)))
    if entitlement is None:
        return False
    entitlement.revoked_at = utcnow()
    db_session.flush()
    forget_entitlements()
    return True
