"""Gunicorn's own error answers as problem+json, without echoing the request.

Gunicorn answers a request it cannot parse or that exceeds its limits (request line, header
count or size) itself, before the app sees it: an HTML page whose text repeats the offending
request line or header, which can carry a patient's name or MRN typed into a query, and it
logs the same text. This worker answers those with a fixed problem+json body (status and title
only) and logs only the error's class.

``gunicorn.conf.py`` selects it (``worker_class``); its limits sit above the app's own
(``app.edge.limits``), so most oversized requests are answered by the app, with a request id.
"""

from __future__ import annotations

import json
import traceback
from http import HTTPStatus
from ssl import SSLError

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker

from app.problems import PROBLEM_CONTENT_TYPE, problem_type_uri

# The statuses gunicorn itself gives these errors (gunicorn.workers.base.Worker.handle_error);
# any other parse error is a 400. The response-header errors come first: they are subclasses of
# the request-header ones but are the app's fault.
_STATUS_BY_ERROR: tuple[tuple[type[BaseException], int], ...] = (
    (http_errors.InvalidResponseHeader, 500),
    (http_errors.InvalidResponseHeaderName, 500),
    (http_errors.ConfigurationProblem, 500),
    (http_errors.LimitRequestLine, 414),
    (http_errors.LimitRequestHeaders, 431),
    (http_errors.UnsupportedTransferCoding, 501),
    (http_errors.ExpectationFailed, 417),
    (http_errors.ForbiddenProxyRequest, 403),
    (SSLError, 403),
    (http_errors.ParseException, 400),
)


def server_error_status(error: BaseException) -> int:
    """Return the HTTP status gunicorn's answer to ``error`` has."""
    return next((status for kind, status in _STATUS_BY_ERROR if isinstance(error, kind)), 500)


def server_error_answer(status: int) -> bytes:
    """Return a complete HTTP response: a problem+json body naming only the status."""
    phrase = HTTPStatus(status).phrase
    body = json.dumps({"type": problem_type_uri(status), "title": phrase,
                       "status": status}).encode()
    head = (f"HTTP/1.1 {status} {phrase}\r\n"
            "Connection: close\r\n"
            f"Content-Type: {PROBLEM_CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "\r\n")
    return head.encode("latin-1") + body


class ProblemThreadWorker(ThreadWorker):
    """Gunicorn's gthread worker, answering the errors it raises itself with problem+json, and
    refusing new connections as soon as it drains."""

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            # Draining after SIGTERM. gthread stops accepting but keeps its copy of the
            # listening socket open until the requests in flight finish (up to
            # graceful_timeout), so the kernel goes on queueing new connections that nobody
            # will serve and that are reset when the worker ends. The master closed its own
            # copy on SIGTERM; closing this one now lets new connections be refused at once,
            # and a client or load balancer goes elsewhere instead of waiting.
            for listener in self.sockets:
                listener.close()

    def handle_error(self, req, client, addr, exc):
        status = server_error_status(exc)
        address = (addr or ("",))[0]  # unix sockets have no address
        if status < 500:
            # The error's message quotes the request line or header: only its class is logged.
            self.log.warning("invalid request from ip=%s: %s (%d)", address,
                             type(exc).__name__, status)
        else:
            self.log.error("error handling request: %s\n%s", type(exc).__name__,
                           "".join(traceback.format_tb(exc.__traceback__)))
        try:
            util.write_nonblock(client, server_error_answer(status))
        except Exception:
            self.log.debug("Failed to send error message.")
