"""The medication hub: a Flask API in front of the hospital systems it connects."""

from __future__ import annotations

from flask import Flask

from app.api import OPENAPI_CONFIG, HubApi, register_docs_assets
from app.extensions import HubResources
from app.observability.logs import configure_logging
from app.observability.requests import init_request_context
from app.problems import register_problem_handlers
from app.settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the hub's Flask app. Tests pass ``settings``; processes read the environment."""
    settings = settings or load_settings()
    configure_logging(settings.hub_log_level)

    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.hub_secret_key, **OPENAPI_CONFIG)
    app.extensions["hub"] = HubResources.from_settings(settings)

    init_request_context(app)
    register_problem_handlers(app)
    configure_api(app)
    configure_teardown(app)
    configure_cli(app)
    return app


def configure_api(app: Flask) -> None:
    from app.health.views import blp as health_blueprint

    api = HubApi(app)
    api.register_blueprint(health_blueprint)
    register_docs_assets(app)


def configure_teardown(app: Flask) -> None:
    @app.teardown_appcontext
    def _remove_session(_error=None) -> None:
        app.extensions["hub"].database.remove_session()


def configure_cli(app: Flask) -> None:
    from app.cli import hub_cli

    app.cli.add_command(hub_cli)
