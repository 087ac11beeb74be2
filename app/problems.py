"""Errors as RFC 9457 problem details (``application/problem+json``), each with the request id.

Every error the hub answers goes through ``problem_response``; bodies never echo input values
or downstream payloads, so they cannot carry PHI.
"""

from __future__ import annotations

import logging
import traceback
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from app.observability.context import request_id_var
from app.phi.redaction import scrub, scrub_values

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://hub.example/problems/"

logger = logging.getLogger(__name__)


class Problem(Exception):
    """An error a service raises when a request cannot be served: the HTTP status, a PHI-free
    detail, and optionally a problem type, field errors and a Retry-After. Views need no
    handler of their own: every Problem becomes a problem+json answer."""

    status = 400
    problem_type: str | None = None

    def __init__(self, detail: str, *, status: int | None = None,
                 problem_type: str | None = None, errors: dict | None = None,
                 retry_after: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.status = status or self.status
        self.problem_type = problem_type or self.problem_type
        self.errors = errors
        self.retry_after = retry_after

    def response(self) -> Response:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return problem_response(self.status, detail=self.detail, errors=self.errors,
                                problem_type=self.problem_type, headers=headers)


def problem_response(status: int, *, detail: str | None = None, title: str | None = None,
                     problem_type: str | None = None, errors: Any = None,
                     headers: dict[str, str] | None = None, **extensions: Any) -> Response:
    """Return a problem+json response for ``status``."""
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (problem_type or phrase.lower().replace(" ", "-")),
        "title": title or phrase,
        "status": status,
    }
    # Bodies are built not to echo input; identifier-shaped text that slips in is masked anyway.
    if detail:
        body["detail"] = scrub(detail)
    if errors:
        body["errors"] = scrub_values(errors)
    body.update(extensions)
    body["request_id"] = request_id_var.get()
    response = Response(json.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def problem_from_http_exception(error: HTTPException) -> Response:
    """Turn a werkzeug/flask-smorest HTTP error into problem+json.

    flask-smorest's ``abort(status, errors=..., message=..., headers=...)`` and webargs' field
    errors (``error.data["messages"]``, keyed by location: json, query, headers…) both end up
    here; field errors are passed on as ``errors``.
    """
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    detail = data.get("message") or error.description
    if errors:
        detail = "The request has invalid fields; see errors."
    headers = {}
    if error.response is None:
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    return problem_response(status, detail=detail, errors=errors, headers=headers)


def register_problem_handlers(app: Flask) -> None:
    """Answer every error, including unexpected ones, with problem+json."""

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        return problem_from_http_exception(error)

    @app.errorhandler(Problem)
    def _problem(problem: Problem):
        return problem.response()

    @app.errorhandler(Exception)
    def _unexpected_error(error: Exception):
        # Exception text can carry values from downstream payloads (PHI), so only the class and
        # the code locations of the traceback are logged, never the message.
        logger.error("unhandled error %s", type(error).__name__, extra={
            "traceback": "".join(traceback.format_tb(error.__traceback__))})
        return problem_response(500, detail="The hub could not complete this request.")
