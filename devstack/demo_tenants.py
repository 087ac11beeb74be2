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

from sqlalchemy.orm import Session

from app.clients.service import ensure_client, new_client_secret
from app.entitlements.service import grant_entitlement
from app.tenants.service import ensure_connection, ensure_tenant, get_product

# Which scopes each kind of demo client gets: a system reads the other system's data.
DEMO_CLIENTS = {
    "administration": ("emar", ["inventory:read"]),
    "inventory": ("inventory", ["administrations:read"]),
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
                base_url, credential = "", ""
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
