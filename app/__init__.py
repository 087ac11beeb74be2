"""The medication hub: a Flask API in front of the hospital systems it connects."""

from __future__ import annotations

from flask import Flask

from app.api import OPENAPI_CONFIG, HubApi, register_docs_assets
from app.audit.hooks import init_audit
from app.auth.principal import init_bearer_auth, init_scope_check
from app.edge.headers import init_response_headers
from app.edge.limits import init_request_limits
from app.edge.origin import PublicOrigin
from app.extensions import HubResources
from app.observability.http_metrics import init_http_metrics
from app.observability.logs import configure_logging
from app.observability.requests import init_request_context
from app.problems import register_problem_handlers
from app.rate_limits import init_rate_limits
from app.settings import Settings, load_settings
from app.syncs.specs import check_default_schedules


def create_app(settings: Settings | None = None) -> Flask:
    """Build the hub's Flask app. Tests pass ``settings``; processes read the environment."""
    settings = settings or load_settings()
    check_default_schedules(settings)
    configure_logging(settings.hub_log_level)

    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.hub_secret_key, **OPENAPI_CONFIG)
    app.extensions["hub"] = HubResources.from_settings(settings)

    init_request_context(app)
    # Before the bearer check and rate limits: they can answer early, and those answers are audited.
    init_audit(app)
    init_http_metrics(app)
    register_problem_handlers(app)
    configure_http_edge(app, settings)
    init_bearer_auth(app)
    configure_api(app, settings)
    # After the rate limits (a refused request still counts against the client's budget) and
    # before any view parses its arguments.
    init_scope_check(app)
    configure_teardown(app)
    configure_cli(app)
    return app


def configure_http_edge(app: Flask, settings: Settings) -> None:
    """Bound every request, give every response its protective headers, and pin the origin
    absolute URLs are built from to ``HUB_PUBLIC_BASE_URL`` (not the request's Host)."""
    init_request_limits(app, settings)
    init_response_headers(app)
    app.wsgi_app = PublicOrigin(app.wsgi_app, settings.hub_public_base_url)


def configure_api(app: Flask, settings: Settings) -> None:
    from app.audit.views import blp as audit_blueprint
    from app.auth.views import blp as oauth_blueprint
    from app.health.views import blp as health_blueprint
    from app.jobs.views import blp as jobs_blueprint
    from app.lookups.views import blp as lookups_blueprint
    from app.pharmacy.views import blp as hl7_blueprint
    from app.syncs.views import blp as syncs_blueprint

    api = HubApi(app)
    # Rate limits are checked after the bearer token, so they count per client.
    init_rate_limits(app, settings, client_blueprints=[lookups_blueprint, audit_blueprint, jobs_blueprint,
                                                         syncs_blueprint, hl7_blueprint],
                     token_blueprint=oauth_blueprint)
    for blueprint in (health_blueprint, oauth_blueprint, lookups_blueprint, audit_blueprint,
                      jobs_blueprint, syncs_blueprint, hl7_blueprint):
        api.register_blueprint(blueprint)
    register_docs_assets(app)


def configure_teardown(app: Flask) -> None:
    @app.teardown_appcontext
    def _remove_session(_error=None) -> None:
        app.extensions["hub"].database.remove_session()


def configure_cli(app: Flask) -> None:
    from app.cli import hub_cli

    app.cli.add_command(hub_cli)
