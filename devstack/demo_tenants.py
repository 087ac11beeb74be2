"""Onboard the demo hospital sites as tenants, from the manifest the demo systems write.

Only the local stack (``make run``, ``python -m devstack onboard``), the test fixtures and the
benchmarks onboard demo tenants, so this lives in ``devstack/``, never in ``app/``. It reads
only the manifest (the hub talks to the demo systems over HTTP and never imports them).
Client secrets of the demo tenants are kept in ``<secrets>/demo-clients.json`` (mode 0600) so
the local stack can hand out working credentials on every start; real tenants are onboarded
with the operator CLI, which shows a secret once and keeps only its hash.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clients.service import ensure_client, new_client_secret
from app.connectors.credentials import NO_CREDENTIAL
from app.entitlements.service import grant_entitlement
from app.events.models import Subscription
from app.events.signing import signing_secret
from app.events.subscriptions import create_subscription
from app.parallel_runs.service import configure_parallel_run, run_id_for
from app.problems import Problem
from app.settings import Settings
from app.tenants.service import (
    ensure_connection,
    ensure_tenant,
    get_product,
    get_tenant_by_slug,
)

# Which scopes each kind of demo client gets: a system reads the other system's data.
DEMO_CLIENTS = {
    "administration": ("emar", ["inventory:read", "dispenses:read"]),
    "inventory": ("inventory", ["administrations:read", "dispenses:read"]),
    # The pharmacy pushes its HL7 messages; over HTTP (POST /v1/hl7) it needs this scope.
    "pharmacy": ("pharmacy", ["hl7:write"]),
}
OPERATOR_SCOPES = ["admin", "audit:read", "jobs:read", "jobs:write"]


@dataclass(frozen=True)
class DemoCredential:
    """A demo client's id and secret, for the start-up banner."""

    tenant: str
    client_id: str
    client_secret: str
    scopes: str


def credential_ref(key_file: Path, secrets_dir: Path) -> str:
    """Return the ``file:`` reference of a credential file (relative to the secrets folder when
    it lies inside it, so the data folder can move)."""
    try:
        return f"file:{key_file.resolve().relative_to(secrets_dir.resolve())}"
    except ValueError:
        return f"file:{key_file.resolve()}"


def _load_secrets(path: Path) -> dict[str, str]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _save_secrets(path: Path, secrets_by_client: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(secrets_by_client, handle, indent=2, sort_keys=True)


def onboard_demo_sites(*, db_session: Session, manifest_path: Path, system_urls: dict[str, str],
                       secrets_dir: Path) -> list[DemoCredential]:
    """Create (or bring up to date) a tenant per demo site, with its connections, entitlements
    and clients. Idempotent: running it again changes nothing but what the manifest changed."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    secrets_path = secrets_dir / "demo-clients.json"
    known_secrets = _load_secrets(secrets_path)
    credentials: list[DemoCredential] = []

    for site in manifest["sites"]:
        tenant = ensure_tenant(db_session=db_session, slug=site["site"], name=site["name"])
        for product_code, system in sorted(site["systems"].items()):
            product = get_product(db_session=db_session, code=product_code)
            options = {"facility": site["facility"], **system.get("options", {})}
            if "path" in system:
                base_url = system_urls[product_code].rstrip("/") + system["path"]
                credential = credential_ref(Path(system["key_file"]), secrets_dir)
            else:
                # A system that pushes to the hub (the pharmacy's HL7 feed) has no address for
                # the hub to call and no credential to present; its options name its senders.
                base_url, credential = "", NO_CREDENTIAL
            ensure_connection(
                db_session=db_session, tenant=tenant, product=product, base_url=base_url,
                credential_ref=credential, timezone=site["timezone"], options=options)
            grant_entitlement(db_session=db_session, tenant=tenant, product=product)

        clients = [(f"{site['site']}-{suffix}", product_code, scopes)
                   for product_code, (suffix, scopes) in sorted(DEMO_CLIENTS.items())
                   if product_code in site["systems"]]
        clients.append((f"{site['site']}-operator", None, OPERATOR_SCOPES))
        for client_id, product_code, scopes in clients:
            secret = known_secrets.setdefault(client_id, new_client_secret())
            product = get_product(db_session=db_session, code=product_code) if product_code else None
            ensure_client(db_session=db_session, client_id=client_id, tenant=tenant,
                          product=product, name=client_id, scopes=scopes, secret=secret)
            credentials.append(DemoCredential(tenant.slug, client_id, secret, " ".join(scopes)))

    db_session.commit()
    _save_secrets(secrets_path, known_secrets)
    return credentials


# The demo inventory's older API, which the demo sites' eMAR link still used before the hub:
# every container origin the hub answers is compared with it (demo_systems/inventory/legacy.py
# says which differences to expect).
DEMO_LEGACY_PATH = "/legacy/v1/sites/{site}"


def configure_demo_parallel_runs(*, db_session: Session, manifest_path: Path,
                                 inventory_url: str, secrets_dir: Path) -> list[str]:
    """Give each onboarded demo site with an inventory system a parallel run of ``container_origin``
    against the demo inventory's legacy API (every lookup sampled), unless it has one already
    (an operator's later changes are kept). Returns the ids of the runs created."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    created = []
    for site in manifest["sites"]:
        system = site["systems"].get("inventory")
        tenant = get_tenant_by_slug(db_session=db_session, slug=site["site"])
        if system is None or tenant is None:
            continue
        try:
            run_id_for(db_session=db_session, tenant_id=str(tenant.id), lookup="container_origin")
            continue
        except Problem:
            pass
        view = configure_parallel_run(
            db_session=db_session, tenant_id=str(tenant.id), lookup="container_origin",
            actor="devstack",
            legacy_base_url=inventory_url.rstrip("/") + DEMO_LEGACY_PATH.format(site=site["site"]),
            legacy_credential_ref=credential_ref(Path(system["key_file"]), secrets_dir),
            legacy_timezone=site["timezone"], sample_rate=1.0, enabled=True)
        created.append(view["id"])
    return created


# The demo subscriber's client: it may read every resource, so it is sent full payloads (as
# minimized for an operator consumer) where a real subscriber with fewer scopes would get less.
EVENTS_CLIENT_SCOPES = ["events:subscribe", "administrations:read", "inventory:read",
                        "dispenses:read", "orders:read"]
DEMO_EVENT_TYPES = ["administration.recorded", "container.moved", "dispense.recorded",
                    "order.placed"]
SUBSCRIBER_SECRETS_FILE = "demo-subscriber.json"


def subscribe_demo_tenants(*, db_session: Session, settings: Settings, manifest_path: Path,
                           subscriber_url: str, secrets_dir: Path) -> list[str]:
    """Give each demo site's tenant an events client and one subscription to every event type at the
    demo subscriber (``<subscriber_url>/events/<tenant>``), and write the signing secrets the
    subscriber verifies with to ``<secrets>/demo-subscriber.json`` (mode 0600). Idempotent.
    Returns the tenants subscribed. ``settings`` must allow the subscriber's http loopback URL
    (the stack sets HUB_WEBHOOK_ALLOW_HTTP and HUB_WEBHOOK_ALLOWED_NETWORKS for the demo)."""
    secrets_path = secrets_dir / SUBSCRIBER_SECRETS_FILE
    known_secrets = _load_secrets(secrets_dir / "demo-clients.json")
    subscriber_secrets: dict[str, str] = {}
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for site in manifest["sites"]:
        tenant = get_tenant_by_slug(db_session=db_session, slug=site["site"])
        client_id = f"{tenant.slug}-events"
        secret = known_secrets.setdefault(client_id, new_client_secret())
        ensure_client(db_session=db_session, client_id=client_id, tenant=tenant, product=None,
                      name=client_id, scopes=EVENTS_CLIENT_SCOPES, secret=secret)
        db_session.commit()
        url = f"{subscriber_url.rstrip('/')}/events/{tenant.slug}"
        existing = db_session.scalar(select(Subscription).where(
            Subscription.tenant_id == tenant.id, Subscription.url == url))
        if existing is None:
            created = create_subscription(
                db_session=db_session, settings=settings, tenant_id=str(tenant.id),
                client_id=client_id, url=url, event_types=DEMO_EVENT_TYPES)
            subscriber_secrets[tenant.slug] = created["secret"]
        else:
            subscriber_secrets[tenant.slug] = signing_secret(
                secret_key=settings.hub_secret_key, subscription_id=existing.id)
    _save_secrets(secrets_dir / "demo-clients.json", known_secrets)
    _save_secrets(secrets_path, subscriber_secrets)
    return sorted(subscriber_secrets)
