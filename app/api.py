"""The flask-smorest ``Api`` of the hub: OpenAPI document, docs UI, problem+json errors."""

from __future__ import annotations

from flask import Blueprint, Flask, send_from_directory
from flask_smorest import Api
from swagger_ui_bundle import swagger_ui_path

from app.problems import problem_from_http_exception

OPENAPI_CONFIG = {
    "API_TITLE": "Medication Hub API",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    # The docs UI's JavaScript is served by the hub itself (from the pinned swagger-ui-bundle
    # package): hospital networks often cannot reach a public CDN.
    "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
}


class HubApi(Api):
    """``Api`` whose HTTP errors are problem+json with the request id."""

    def handle_http_exception(self, error):
        return problem_from_http_exception(error)


def register_docs_assets(app: Flask) -> None:
    """Serve the Swagger UI files under ``/docs/assets/``."""
    assets = Blueprint("docs_assets", __name__)

    @assets.get("/docs/assets/<path:filename>")
    def docs_asset(filename: str):
        return send_from_directory(swagger_ui_path, filename, max_age=3600)

    app.register_blueprint(assets)
