"""The flask-smorest ``Api`` of the hub: OpenAPI document, docs UI, problem+json errors.

The document is completed from what the views declare, so it cannot drift from what they do:
each operation's ``operationId`` is its endpoint (the ``operation`` of its audit events), its
security requirement is the scope it declares with ``requires_scopes`` (the same declaration
the scope check enforces), and every error response is ``application/problem+json`` with the
``Problem`` schema, with the statuses that every operation of its kind can answer added to the
ones its view documents.
"""

from __future__ import annotations

from http import HTTPStatus

from apispec import BasePlugin
from flask import Blueprint as FlaskBlueprint
from flask import Flask, send_from_directory
from flask_smorest import Api, Blueprint
from marshmallow import INCLUDE, Schema, fields
from swagger_ui_bundle import swagger_ui_path

from app.auth.service import KNOWN_SCOPES
from app.problems import PROBLEM_CONTENT_TYPE, problem_from_http_exception

TOKEN_PATH = "/v1/oauth/token"
OAUTH2_SCHEME = "oauth2"
PROBLEM_SCHEMA = "Problem"
FHIR_BUNDLE_SCHEMA = "FhirBundle"

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
    # "Authorize" runs the clientCredentials flow itself: it posts grant_type and the ticked
    # scopes (none ticked: every scope the client holds) with the client id and secret as HTTP
    # Basic, which the token endpoint accepts. No scope or client is prefilled.
    "OPENAPI_SWAGGER_UI_CONFIG": {"displayOperationId": True, "tryItOutEnabled": True},
}

SCOPE_DESCRIPTIONS = {
    "administrations:read": "Read dose administrations (the tenant's eMAR).",
    "inventory:read": "Read inventory and container origins (the tenant's inventory system).",
    "jobs:read": "Read jobs and their de-identified results.",
    "jobs:write": "Submit and cancel jobs.",
    "audit:read": "Read the tenant's audit trail.",
    "admin": "Operate the tenant: scheduled syncs and dead letters.",
    "hl7:write": "Send the tenant's pharmacy HL7 v2 messages (POST /v1/hl7).",
}

# Errors every operation of a kind can answer, whatever its view documents.
_SECURED_ERRORS = {401: "Missing, expired or invalid bearer token.",
                   403: "The token lacks the scope this operation needs."}
_V1_ERRORS = {422: "Invalid parameters; `errors` names each field and rule.",
              429: "Rate limit reached; see `Retry-After`."}
_BODY_ERRORS = {400: "The body is not JSON the hub can read.",
                413: "The body is larger than the hub accepts."}
# The edge's own limits (app/edge/limits.py), checked before any route on every request.
_EDGE_ERRORS = {414: "The URL is longer than the hub accepts.",
                431: "The request headers are larger than the hub accepts."}


class ProblemSchema(Schema):
    """An RFC 9457 problem, as every error of the hub is sent (``application/problem+json``).
    Some problems add members of their own (``/readyz`` its ``checks``)."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True, metadata={
        "description": "URI of the problem type.",
        "example": "https://hub.example/problems/insufficient-scope"})
    title = fields.String(required=True, metadata={"example": "Forbidden"})
    status = fields.Integer(required=True, metadata={"example": 403})
    detail = fields.String(metadata={"description": "PHI-free explanation.",
                                     "example": "This operation needs the scope jobs:write."})
    errors = fields.Dict(metadata={"description": "Field errors by location and field name."})
    request_id = fields.String(allow_none=True, metadata={
        "example": "4f1c2b7e9a0d4e5f8a6b3c2d1e0f9a8b"})


# A FHIR R4 Bundle, as far as the hub promises its shape (the resources follow FHIR R4).
FHIR_BUNDLE = {
    "type": "object",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["Bundle"]},
        "type": {"type": "string", "example": "searchset"},
        "entry": {"type": "array", "items": {"type": "object"}},
        "link": {"type": "array", "items": {"type": "object"}},
    },
}


class HubBlueprint(Blueprint):
    """A flask-smorest blueprint that declares the resource type its views' audit events
    name; a view that touches another one declares its own with ``audits``."""

    def __init__(self, *args, audit_resource_type: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.audit_resource_type = audit_resource_type

    @staticmethod
    def audits(resource_type: str):
        """Declare the resource type this view's audit events name."""

        def declare(view):
            view.audit_resource_type = resource_type
            return view

        return declare


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                               "schema": {"type": "integer", "minimum": 1}}}


def _problem_content() -> dict:
    return {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}}}


class ApiContractPlugin(BasePlugin):
    """apispec plugin that completes each operation from its view's declarations."""

    def __init__(self, app: Flask):
        super().__init__()
        self.app = app

    def operation_helper(self, path=None, operations=None, **kwargs):
        rule = kwargs.get("rule")
        if rule is None or not operations:
            return
        view = self.app.view_functions.get(rule.endpoint)
        scopes = sorted(getattr(view, "required_scopes", None) or ())
        for method, operation in operations.items():
            operation["operationId"] = (rule.endpoint if len(operations) == 1
                                        else f"{rule.endpoint}.{method}")
            if scopes:
                operation["security"] = [{OAUTH2_SCHEME: scopes}]
            responses = operation.setdefault("responses", {})
            responses.pop("default", None)
            generic = dict(_EDGE_ERRORS)
            if path.startswith("/v1/"):
                generic.update(_V1_ERRORS)
            if scopes:
                generic.update(_SECURED_ERRORS)
            if "requestBody" in operation:
                generic.update(_BODY_ERRORS)
            documented = {int(status) for status in responses}
            for status, description in generic.items():
                if status not in documented:
                    responses[status] = {"description": description}
            if 429 in generic:
                responses[429] = {**responses[429], "headers": RETRY_AFTER}
            for status in list(responses):
                if int(status) >= 400:
                    responses[status] = self._as_problem(int(status), responses[status])

    @staticmethod
    def _as_problem(status: int, response) -> dict:
        if not isinstance(response, dict):
            # A reference to flask-smorest's generic error responses: replaced by a problem.
            return {"description": HTTPStatus(status).phrase, "content": _problem_content()}
        if response.get("content"):
            # The view documents its own error shape (the token endpoint's RFC 6749 errors).
            return response
        return {**response, "content": _problem_content()}


class HubApi(Api):
    """``Api`` whose HTTP errors are problem+json with the request id, and whose document says
    so."""

    # Each operation lists the statuses it answers; no catch-all "default" response.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def init_app(self, app: Flask, *, spec_kwargs=None):
        spec_kwargs = dict(spec_kwargs or {})
        spec_kwargs["extra_plugins"] = [*spec_kwargs.get("extra_plugins", ()),
                                        ApiContractPlugin(app)]
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.spec.components.schema(PROBLEM_SCHEMA, schema=ProblemSchema)
        self.spec.components.schema(FHIR_BUNDLE_SCHEMA, FHIR_BUNDLE)
        self.spec.components.security_scheme(OAUTH2_SCHEME, {
            "type": "oauth2",
            "description": f"OAuth2 client credentials: `POST {TOKEN_PATH}` with the client id "
                           "and secret (HTTP Basic or form fields) returns a bearer token "
                           "(a JWT valid for at most 15 minutes) for the client's scopes.",
            "flows": {"clientCredentials": {
                "tokenUrl": TOKEN_PATH,
                "scopes": {scope: SCOPE_DESCRIPTIONS.get(scope, scope)
                           for scope in sorted(KNOWN_SCOPES)}}}})

    def handle_http_exception(self, error):
        return problem_from_http_exception(error)


def register_docs_assets(app: Flask) -> None:
    """Serve the Swagger UI files under ``/docs/assets/``."""
    assets = FlaskBlueprint("docs_assets", __name__)

    @assets.get("/docs/assets/<path:filename>")
    def docs_asset(filename: str):
        return send_from_directory(swagger_ui_path, filename, max_age=3600)

    app.register_blueprint(assets)
