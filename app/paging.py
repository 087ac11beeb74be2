"""Opaque, tamper-evident paging cursors: the one codec of every list endpoint.

A cursor is the URL-safe base64 of a small JSON object, the position where the next page
starts (a downstream cursor, an offset, an id), signed (itsdangerous, HMAC-SHA256) with a key
derived from the hub's secret and the kind of list, the tenant and the query's filters. A
cursor that was altered or forged, or that was issued to another tenant, for another list or
for other filters, fails the check; then every position value is checked for its type and
range. Either way the answer is 422 naming ``cursor``, before anything reads the position, so
nothing made up is sent downstream or to the database.

A cursor carries only paging positions, never filter values (they are bound, not carried), so
it cannot carry PHI; the filters are sent again with every page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, Signer
from marshmallow import fields, validate

from app.problems import Problem

MAX_CURSOR_LENGTH = 1024
_VERSION = "c1"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
NOT_A_CURSOR = "not a cursor from this API for this tenant and these filters"

PositionCheck = Callable[[Any], bool]


@dataclass(frozen=True)
class CursorKind:
    """What one list's cursors hold: the list's name (a cursor of one list is refused by
    another) and a check of each position value's type and range."""

    name: str
    positions: Mapping[str, PositionCheck]


def integer(minimum: int, maximum: int) -> PositionCheck:
    """A position that is an integer (not a bool or a float) in [minimum, maximum]."""
    return lambda value: (isinstance(value, int) and not isinstance(value, bool)
                          and minimum <= value <= maximum)


def text(pattern: str) -> PositionCheck:
    """A position that is a string matching ``pattern`` (ASCII)."""
    grammar = re.compile(pattern, re.ASCII)
    return lambda value: isinstance(value, str) and bool(grammar.match(value))


class CursorField(fields.String):
    """The ``cursor`` query parameter: a bounded string of the cursor grammar. Whether it is
    genuine is checked where the list is read (``decode_cursor``), which knows the tenant."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {"description": "`next_cursor` of the previous page."})
        super().__init__(validate=[
            validate.Length(max=MAX_CURSOR_LENGTH, error=NOT_A_CURSOR),
            validate.Regexp(CURSOR_PATTERN, re.ASCII, error=NOT_A_CURSOR)], **kwargs)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"cannot bind a cursor to a {type(value).__name__}")


def _signer(kind: CursorKind, *, key: str, tenant_id: str, query: Mapping) -> Signer:
    filters = {name: value for name, value in query.items() if value is not None}
    binding = json.dumps([_VERSION, kind.name, str(tenant_id), filters],
                         sort_keys=True, separators=(",", ":"), default=_json_value)
    # The list, the tenant and the filters are the salt of the signing key: a cursor issued for
    # another list, tenant or filters fails the signature without carrying them, and a cursor
    # signature can never stand in for anything else signed with the hub's secret.
    return Signer(key, salt="hub paging cursor " + binding, digest_method=hashlib.sha256,
                  key_derivation="hmac")


def encode_cursor(kind: CursorKind, position: dict, *, key: str, tenant_id: str,
                  query: Mapping) -> str:
    """Return the cursor of ``position`` in the list ``kind``, bound to the tenant and the
    query's filters (None filters count as absent)."""
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    payload = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return _signer(kind, key=key, tenant_id=tenant_id, query=query).sign(payload).decode()


def invalid_cursor() -> Problem:
    """The 422 problem naming ``cursor`` (the cursor itself is not repeated)."""
    return Problem("The request has invalid fields; see errors.", status=422,
                   errors={"query": {"cursor": [NOT_A_CURSOR]}})


def decode_cursor(kind: CursorKind, cursor: str, *, key: str, tenant_id: str,
                  query: Mapping) -> dict:
    """Return the position ``cursor`` holds if the hub issued it for this list, tenant and
    query, and every value passes its check; otherwise raise the 422 ``Problem``."""
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
        raise invalid_cursor()
    try:
        payload = _signer(kind, key=key, tenant_id=tenant_id, query=query).unsign(cursor)
    except BadSignature:
        raise invalid_cursor() from None
    try:
        position = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        raise invalid_cursor() from None
    if not isinstance(position, dict) or set(position) != set(kind.positions):
        raise invalid_cursor()
    if not all(check(position[name]) for name, check in kind.positions.items()):
        raise invalid_cursor()
    return position
