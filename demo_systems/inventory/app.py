"""The inventory system's app factory (``gunicorn 'demo_systems.inventory.app:create_app()'``)."""
from __future__ import annotations

from pathlib import Path

from flask import Flask, Request

from demo_systems.app_factory import create_demo_app
from demo_systems.database import ReadOnlyDatabase, RecordingDatabase
from demo_systems.front_desk import DemoSystem
from demo_systems.inventory import store
from demo_systems.inventory.legacy import legacy_api
from demo_systems.inventory.views import api
from demo_systems.sites import INVENTORY, site_by_slug


def _presented_key(request: Request) -> str | None:
    return request.headers.get("X-Api-Key")


def _open_store(path: Path) -> store.InventoryStore:
    return store.InventoryStore(ReadOnlyDatabase(path), RecordingDatabase(path))


def _export_phi(_store: store.InventoryStore) -> dict:
    # The inventory holds no patient data: barcodes, lots and units are not PHI.
    return {"patients": [], "notes": []}


INVENTORY_SYSTEM = DemoSystem(
    name=INVENTORY,
    api=api,
    database_file=store.FILE_NAME,
    site_variable="site",
    site_named=site_by_slug,
    presented_key=_presented_key,
    open_store=_open_store,
    export_phi=_export_phi,
    record_new=lambda store, site, count, now, seed: store.move_new(
        site.slug, count=count, now=now, seed=seed),
    older_apis=(legacy_api,),
)


def create_app(data_dir: str | Path | None = None) -> Flask:
    """The inventory app serving the world seeded into ``data_dir`` (default ``$DEMO_DATA_DIR``)."""
    return create_demo_app(INVENTORY_SYSTEM, data_dir)
