"""Bounds on each request, so that no request is read or parsed past what the API needs.

Limits on the request line and headers sit below gunicorn's (``gunicorn.conf.py``), so a request
that only just exceeds them is answered here, as problem+json with a request id; whatever is
larger still gets problem+json from gunicorn's worker (``app.edge.server``).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate

from flask import Flask, Request, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

from app.problems import Problem, problem_response
from app.settings import Settings

# The API's URLs are short (ids, codes, a cursor): 4 KiB leaves room for every parameter at its
# own longest, and stays below gunicorn's request-line limit (8190).
MAX_URL_LENGTH = 4096
# Clients send a dozen headers of a few hundred bytes (a bearer token is under 1 KiB); gunicorn
# stops at 100 fields of 8190 bytes each.
MAX_HEADER_COUNT = 50
MAX_HEADER_FIELD_BYTES = 4096
MAX_HEADER_BYTES = 16384

MAX_JSON_DEPTH_CONFIG = "HUB_MAX_JSON_DEPTH"

# A JSON string, escapes included; one without its closing quote runs to the end of the body. The
# possessive ``*+`` never backtracks, so each byte is looked at once whatever the body holds.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_NOT_A_BRACKET = bytes(byte for byte in range(256) if byte not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_nesting_exceeds(body: bytes, max_depth: int) -> bool:
    """Whether ``body``, read as JSON, opens more than ``max_depth`` arrays or objects at once.

    Strings are skipped (brackets in them are text); the rest is reduced to its brackets and
    their running depth taken, all at C speed: a 1 MiB body of brackets takes milliseconds.
    A body that is not JSON at all is left to the parser to refuse.
    """
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    encoding = json.detect_encoding(body)
    if encoding != "utf-8":
        # UTF-16 or UTF-32 (json.loads accepts them), or a BOM: scan the UTF-8 equivalent, so a
        # two-byte quote or backslash cannot hide brackets from the string skipping.
        try:
            body = body.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
        except UnicodeError:
            return False
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_A_BRACKET)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > max_depth


class _CappedBody(LimitedStream):
    """The body of a request sent without ``Content-Length`` (chunked): 413 as soon as it
    yields more than ``cap`` bytes.

    werkzeug's own maximum on such a stream stops reading at the maximum without an error, so a
    longer body would be parsed cut short (a truncated form can still be a valid form).
    """

    def __init__(self, stream, cap: int):
        super().__init__(stream, cap + 1, is_max=True)
        self.cap = cap

    def readinto(self, buffer) -> int | None:
        count = super().readinto(buffer)
        if self._pos > self.cap:
            raise RequestEntityTooLarge()
        return count


class BoundedRequest(Request):
    """A request whose body is read at most up to ``MAX_CONTENT_LENGTH`` bytes, and whose JSON
    body is refused (400) if nested deeper than the configured depth.

    Python's JSON parser recurses once per level and fails with a RecursionError (a 500) on a
    body of a few thousand ``[``. The check runs on the raw bytes the first time anything reads
    the body (webargs, ``get_json``), so it covers every JSON body whichever parser reads it, and
    it runs where parsing would: after authentication and the scope check, like validation.
    """

    _depth_checked = False

    @cached_property
    def stream(self):
        cap = self.max_content_length
        if (self.content_length is None and cap is not None and not self.shallow
                and self.environ.get("wsgi.input_terminated")):
            return _CappedBody(self.environ["wsgi.input"], cap)
        return super().stream

    def get_data(self, cache: bool = True, as_text: bool = False,  # type: ignore[override]
                 parse_form_data: bool = False):
        data = super().get_data(cache=cache, as_text=False, parse_form_data=parse_form_data)
        if not self._depth_checked and self.is_json:
            self._depth_checked = True
            max_depth = current_app.config[MAX_JSON_DEPTH_CONFIG]
            if json_nesting_exceeds(data, max_depth):
                raise Problem(f"The JSON body nests arrays or objects deeper than {max_depth} "
                              "levels.", status=400, problem_type="json-too-deep")
        return data.decode(errors="replace") if as_text else data


def _bound_request() -> None:
    path_length = len(request.script_root) + len(request.environ.get("PATH_INFO", ""))
    if path_length + len(request.query_string) > MAX_URL_LENGTH:
        raise Problem(f"The URL is longer than {MAX_URL_LENGTH} characters.", status=414,
                      problem_type="url-too-long")
    sizes = [len(name) + len(value) for name, value in request.headers.items()]
    if (len(sizes) > MAX_HEADER_COUNT or max(sizes, default=0) > MAX_HEADER_FIELD_BYTES
            or sum(sizes) > MAX_HEADER_BYTES):
        raise Problem(f"The request headers exceed {MAX_HEADER_COUNT} fields, "
                      f"{MAX_HEADER_FIELD_BYTES} bytes per field or {MAX_HEADER_BYTES} bytes in "
                      "all.", status=431, problem_type="headers-too-large")
    declared = request.content_length
    if declared is not None and declared > current_app.config["MAX_CONTENT_LENGTH"]:
        # Refused before a byte of the body is read; a body sent without Content-Length
        # (chunked) is refused once its reading passes the limit (BoundedRequest.stream).
        raise RequestEntityTooLarge()


def _body_too_large(_error: RequestEntityTooLarge):
    return problem_response(413, problem_type="body-too-large", detail=(
        f"The request body is larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes."))


def init_request_limits(app: Flask, settings: Settings) -> None:
    """Answer requests with an overlong URL (414), too many or too large headers (431), a body
    over ``HUB_MAX_BODY_BYTES`` (413) or JSON nested deeper than ``HUB_MAX_JSON_DEPTH`` (400).

    Install before the bearer check, so oversized requests are refused before anything reads
    them; the audit and request-id hooks, installed earlier, still see these answers.
    """
    app.config["MAX_CONTENT_LENGTH"] = settings.hub_max_body_bytes
    app.config[MAX_JSON_DEPTH_CONFIG] = settings.hub_max_json_depth
    app.request_class = BoundedRequest
    app.before_request(_bound_request)
    app.register_error_handler(RequestEntityTooLarge, _body_too_large)
