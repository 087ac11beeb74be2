"""Opaque paging cursors of every list endpoint (URL-safe base64 of a small JSON object).

A cursor carries only paging positions (a downstream cursor, an offset), never filter values,
so it cannot carry PHI; the filters are sent again with every page.
"""

from __future__ import annotations

import base64
import binascii
import json


class InvalidCursor(ValueError):
    """The cursor was not made by the hub."""


def encode_cursor(position: dict) -> str:
    """Return the cursor of ``position``."""
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, expected_keys: set[str]) -> dict:
    """Return the position a cursor holds, checking it has exactly ``expected_keys``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidCursor("not a cursor from this API") from None
    if not isinstance(position, dict) or set(position) != expected_keys:
        raise InvalidCursor("not a cursor from this API")
    return position
