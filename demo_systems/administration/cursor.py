"""The eMAR's opaque pagination cursor: "continue after administration N", tamper-evident.

Clients must treat it as opaque; it is base64 of a versioned payload plus a short MAC, so a
hand-edited or truncated cursor is refused (400) instead of silently skipping records.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_MAC_KEY = b"demo-emar-cursor"
_VERSION = "v1"


class BadCursor(ValueError):
    """A cursor this system did not issue."""


def encode(after_id: int) -> str:
    """The cursor that continues after administration ``after_id``."""
    payload = f"{_VERSION}:{after_id}"
    return base64.urlsafe_b64encode(f"{payload}:{_mac(payload)}".encode()).decode().rstrip("=")


def decode(cursor: str) -> int:
    """The administration id a cursor continues after."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, after_id, mac = text.split(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not one this system issued") from None
    payload = f"{version}:{after_id}"
    if version != _VERSION or not after_id.isdigit() or not hmac.compare_digest(mac, _mac(payload)):
        raise BadCursor("cursor is not one this system issued")
    return int(after_id)


def _mac(payload: str) -> str:
    return hmac.new(_MAC_KEY, payload.encode(), hashlib.sha256).hexdigest()[:12]
