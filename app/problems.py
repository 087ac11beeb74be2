"""Errors as RFC 9457 problem details (``application/problem+json``), each with the request id.

Every error the hub answers goes through ``problem_response``; bodies never echo input values
or downstream payloads, so they cannot carry PHI.

One exception type, :class:`Problem`, for every error a service raises, and one handler for it.
Its ``type`` URI is either a registered hub problem type (:data:`PROBLEM_TYPES`: each slug
declared once, with its title and default status) or, without a ``problem_type``, the HTTP
status's own (``…/problems/not-found``). An unregistered slug is refused where it is raised.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from app.observability.context import request_id_var
from app.phi.redaction import scrub, scrub_values

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://hub.example/problems/"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProblemType:
    """A registered problem type: its usual status and the title every occurrence carries
    (by default the status's HTTP phrase, which is what the answers have always carried)."""

    status: int
    title: str = ""

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", HTTPStatus(self.status).phrase)


# The hub's own problem types, by slug (the last segment of the ``type`` URI); clients may
# branch on these. A new slug is declared here, once, before any code raises it.
PROBLEM_TYPES: dict[str, ProblemType] = {
    "bad-downstream-answer": ProblemType(502),
    "change-watermark-moved": ProblemType(409),
    "client-disabled": ProblemType(403),
    "body-too-large": ProblemType(413),
    "dead-letter-not-replayable": ProblemType(409),
    "dead-letter-replayed": ProblemType(409),
    "delivery-not-replayable": ProblemType(409),
    "database-unavailable": ProblemType(503, "Database unavailable"),
    "downstream-unavailable": ProblemType(503),
    "broker-unavailable": ProblemType(503, "Broker unavailable"),
    "headers-too-large": ProblemType(431),
    "hl7-sender-claimed": ProblemType(409),
    "hub-wide-sync": ProblemType(403),
    "idempotency-key-reused": ProblemType(409),
    "insufficient-scope": ProblemType(403),
    "job-finished": ProblemType(409),
    "json-too-deep": ProblemType(400),
    "no-phi-policy": ProblemType(403),
    "not-hl7": ProblemType(400),
    "not-connected": ProblemType(503),
    "not-offered-by-system": ProblemType(501, "Not offered by the tenant's system"),
    "not-entitled": ProblemType(403),
    "not-ready": ProblemType(503, "Not ready"),
    "redis-unavailable": ProblemType(503, "Redis unavailable"),
    "subscription-not-paused": ProblemType(409),
    "too-many-active-jobs": ProblemType(429),
    "url-too-long": ProblemType(414),
    # A sync run's failure (recorded on the run, not answered over HTTP).
    "warming-incomplete": ProblemType(503),
}


def problem_type_uri(status: int, problem_type: str | None = None) -> str:
    """Return the ``type`` URI of a problem: its registered slug's, else the status's own."""
    return PROBLEM_TYPE_BASE + (problem_type or
                                HTTPStatus(status).phrase.lower().replace(" ", "-"))


def registered_problem_type(slug: str) -> ProblemType:
    """Return the registered problem type ``slug``; an unregistered slug is a programming error."""
    try:
        return PROBLEM_TYPES[slug]
    except KeyError:
        raise ValueError(f"unregistered problem type {slug!r}: declare it in "
                         "app.problems.PROBLEM_TYPES") from None


class Problem(Exception):
    """An error a service raises when a request cannot be served: a PHI-free detail, a
    registered problem type and/or an HTTP status (default: the type's, else 400), and
    optionally field errors and a Retry-After. Views need no handler of their own: every
    Problem becomes a problem+json answer."""

    def __init__(self, detail: str, *, status: int | None = None,
                 problem_type: str | None = None, errors: dict | None = None,
                 retry_after: int | None = None):
        super().__init__(detail)
        registered = registered_problem_type(problem_type) if problem_type else None
        self.detail = detail
        self.status = status or (registered.status if registered else 400)
        self.problem_type = problem_type
        self.errors = errors
        self.retry_after = retry_after

    def response(self) -> Response:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return problem_response(self.status, detail=self.detail, errors=self.errors,
                                problem_type=self.problem_type, headers=headers)


def problem_response(status: int, *, detail: str | None = None, title: str | None = None,
                     problem_type: str | None = None, errors: Any = None,
                     headers: dict[str, str] | None = None, **extensions: Any) -> Response:
    """Return a problem+json response for ``status`` (of a registered ``problem_type``, or of
    the status's own type)."""
    phrase = HTTPStatus(status).phrase
    registered = registered_problem_type(problem_type) if problem_type else None
    body: dict[str, Any] = {
        "type": problem_type_uri(status, problem_type),
        "title": title or (registered.title if registered else phrase),
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


@dataclass(frozen=True)
class Outage:
    """A part the hub depends on is unreachable: which problem type says so, and when to try
    again (about the time a restart or a failover takes)."""

    problem_type: str
    detail: str
    retry_after: int


# Errors that mean "a dependency is down", not "the hub is wrong": answered 503 with
# Retry-After (never 500), so clients back off and retry. SQLAlchemy's OperationalError and
# InterfaceError are the DBAPI's connection failures (refused, dropped, failover); its
# TimeoutError is a pool with no connection to give.
OUTAGES: tuple[tuple[tuple[type[BaseException], ...], Outage], ...] = (
    ((sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
      sqlalchemy.exc.TimeoutError),
     Outage("database-unavailable", "The hub's database is unavailable; try again shortly.", 5)),
    ((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
      redis.exceptions.BusyLoadingError),
     Outage("redis-unavailable", "The hub's Redis is unavailable; try again shortly.", 5)),
    ((kombu.exceptions.OperationalError,),
     Outage("broker-unavailable", "The hub's job queue is unavailable; try again shortly.", 10)),
)


def outage_of(error: BaseException | None) -> Outage | None:
    """Return the outage ``error`` (or the error it was raised from) stands for, if any."""
    seen = 0
    while error is not None and seen < 5:
        for classes, outage in OUTAGES:
            if isinstance(error, classes):
                return outage
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def outage_response(outage: Outage) -> Response:
    """The 503 problem+json of ``outage``."""
    return problem_response(503, detail=outage.detail, problem_type=outage.problem_type,
                            headers={"Retry-After": str(outage.retry_after)})


def register_problem_handlers(app: Flask) -> None:
    """Answer every error, including unexpected ones, with problem+json; a dependency that is
    down is a 503 with Retry-After, never a 500."""

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        # An error raised outside a view (a request hook, after_request) reaches Flask as a
        # 500 InternalServerError wrapping it.
        outage = outage_of(getattr(error, "original_exception", None))
        if outage is not None:
            logger.warning("dependency unavailable: %s", outage.problem_type)
            return outage_response(outage)
        return problem_from_http_exception(error)

    @app.errorhandler(Problem)
    def _problem(problem: Problem):
        return problem.response()

    @app.errorhandler(Exception)
    def _unexpected_error(error: Exception):
        outage = outage_of(error)
        if outage is not None:
            logger.warning("dependency unavailable: %s", outage.problem_type)
            return outage_response(outage)
        # Exception text can carry values from downstream payloads (PHI), so only the class and
        # the code locations of the traceback are logged, never the message.
        logger.error("unhandled error %s", type(error).__name__, extra={
            "traceback": "".join(traceback.format_tb(error.__traceback__))})
        return problem_response(500, detail="The hub could not complete this request.")
