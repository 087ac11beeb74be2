"""Headers every response of the API carries, whichever view, hook or error handler made it."""

from __future__ import annotations

from flask import Flask, Response, request


def _protect(response: Response) -> Response:
    # Without it a browser may sniff a JSON error that echoes nothing as HTML anyway; cheap and
    # never wrong for an API.
    response.headers["X-Content-Type-Options"] = "nosniff"
    # No response of the hub is worth a shared or browser cache, and most carry PHI (lookups,
    # FHIR, job results, dead letters, audit events) or tenant names (/metrics). So ``no-store``
    # is the rule everywhere, rather than a list of PHI routes a new route could be missing
    # from. The only opt-out is a response outside /v1 that sets its own Cache-Control on
    # purpose: the Swagger UI's static files.
    if request.path.startswith("/v1/") or "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def init_response_headers(app: Flask) -> None:
    """Send ``X-Content-Type-Options: nosniff`` and ``Cache-Control: no-store`` on every
    response (errors included)."""
    app.after_request(_protect)
