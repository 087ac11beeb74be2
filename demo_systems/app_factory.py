"""Builds either demo system's Flask app from its :class:`~demo_systems.front_desk.DemoSystem`.

Served by gunicorn with ONE worker process of class gthread and many threads
(``python -m demo_systems serve``). One process because faults and request counts are
in-process state that every request must share; threads because injected latency and hangs
are sleeps, and a sleeping thread must not stop the others from answering.
"""
from __future__ import annotations

import os
from pathlib import Path

from flask import Flask
from werkzeug.exceptions import HTTPException

from demo_systems import live, manifest
from demo_systems.admin import admin
from demo_systems.front_desk import DemoSystem, FrontDesk, error_response
from demo_systems.keys import api_key
from demo_systems.params import QueryError
from demo_systems.sites import sites_running

DEFAULT_ADMIN_TOKEN = "demo-admin"


def create_demo_app(system: DemoSystem, data_dir: str | Path | None = None) -> Flask:
    """A Flask app serving ``system`` from the world seeded into ``data_dir``.

    ``data_dir`` defaults to the ``DEMO_DATA_DIR`` environment variable.
    """
    data_dir = Path(data_dir or os.environ["DEMO_DATA_DIR"]).resolve()
    seed = manifest.read(data_dir)["seed"]
    app = Flask(f"demo_systems.{system.name}")
    app.json.sort_keys = False  # keep the native field order each system writes
    desk = FrontDesk(
        system=system,
        store=system.open_store(data_dir / system.database_file),
        data_dir=data_dir,
        keys={site.slug: api_key(seed, system.name, site.slug) for site in sites_running(system.name)},
        admin_token=os.environ.get("DEMO_ADMIN_TOKEN", DEFAULT_ADMIN_TOKEN),
        seed=seed,
    )
    app.extensions["demo_front_desk"] = desk
    app.url_value_preprocessor(lambda endpoint, values: desk.take_site(values))
    app.before_request(desk.receive)
    app.register_blueprint(system.api)
    for older_api in system.older_apis:
        app.register_blueprint(older_api)
    app.register_blueprint(admin)
    app.register_error_handler(HTTPException, _http_error)
    live.start_from_environment(desk)
    return app


def _http_error(error: HTTPException):
    extra = {"parameter": error.parameter} if isinstance(error, QueryError) else {}
    return error_response(error.code or 500, error.name.lower().replace(" ", "_"),
                          error.description or error.name, **extra)
