"""The eMAR's app factory (``gunicorn 'demo_systems.administration.app:create_app()'``)."""
from __future__ import annotations

from pathlib import Path

from flask import Flask, Request

from demo_systems.administration import store
from demo_systems.administration.views import api
from demo_systems.app_factory import create_demo_app
from demo_systems.database import ReadOnlyDatabase, RecordingDatabase
from demo_systems.front_desk import DemoSystem
from demo_systems.sites import ADMINISTRATION, site_by_facility


def _presented_key(request: Request) -> str | None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "apikey" else None


def _open_store(path: Path) -> store.AdministrationStore:
    return store.AdministrationStore(ReadOnlyDatabase(path), RecordingDatabase(path))


ADMINISTRATION_SYSTEM = DemoSystem(
    name=ADMINISTRATION,
    api=api,
    database_file=store.FILE_NAME,
    site_variable="facility",
    site_named=site_by_facility,
    presented_key=_presented_key,
    open_store=_open_store,
    export_phi=store.AdministrationStore.phi,
    record_new=lambda store, site, count, now, seed: store.chart_new(
        site.facility, count=count, now=now, seed=seed),
)


def create_app(data_dir: str | Path | None = None) -> Flask:
    """The eMAR app serving the world seeded into ``data_dir`` (default ``$DEMO_DATA_DIR``)."""
    return create_demo_app(ADMINISTRATION_SYSTEM, data_dir)
