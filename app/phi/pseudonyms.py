"""Stable, tenant-scoped pseudonyms for patients and staff.

A pseudonym is a keyed hash (HMAC-SHA256) of the identifier, so the same MRN at the same tenant
always gets the same pseudonym (consumers can group doses by patient), while another tenant gets
a different one (no joining across hospitals) and nobody without the key can go back or test a
guessed MRN. Each tenant's key is derived from one master key, so a tenant's pseudonyms change
only if the master key or the tenant id does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

PREFIXES = {"patient": "pt_", "staff": "st_"}
"""The pseudonym prefix per kind of identifier, so a reader can tell a patient from a nurse."""

DIGEST_CHARS = 26
"""Base32 characters kept after the prefix: 130 bits, far from any collision in a hospital."""

MIN_KEY_BYTES = 16


def tenant_pseudonym_key(master_key: str, tenant_id: str) -> bytes:
    """Return the tenant's pseudonym key: HMAC-SHA256(master key, ``"pseudonym:" + tenant_id``).

    Pass a tenant id that never changes (the tenant's UUID rather than a renameable slug):
    a new id means new pseudonyms for every patient of that tenant.
    """
    if not master_key:
        # A blank key would give every deployment the same, guessable pseudonyms.
        raise ValueError("the pseudonym master key is empty")
    if not tenant_id:
        raise ValueError("a tenant id is needed to derive a pseudonym key")
    return hmac.new(master_key.encode(), f"pseudonym:{tenant_id}".encode(), hashlib.sha256).digest()


class Pseudonymizer:
    """Turns identifiers into pseudonyms with one tenant's key."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a pseudonym key has at least {MIN_KEY_BYTES} bytes")
        # The keyed HMAC state is copied per value, so the key is hashed into the pads only once.
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        # Never show the key, even in a traceback or a debugger.
        return "Pseudonymizer(<key hidden>)"

    def pseudonym(self, value: str, kind: str) -> str:
        """Return the pseudonym of ``value`` (an MRN, a nurse id) of this ``kind``: ``pt_…``, ``st_…``.

        The kind is part of the hashed message, so a nurse id and an MRN that happen to be the
        same string still get unrelated pseudonyms. The value is hashed exactly as given;
        connectors normalize identifiers before this point.
        """
        try:
            prefix = PREFIXES[kind]
        except KeyError:
            raise ValueError(f"unknown pseudonym kind {kind!r}") from None
        mac = self._keyed.copy()
        mac.update(kind.encode())
        mac.update(b"\x00")
        mac.update(value.encode())
        # 20 bytes are 32 base32 characters with no padding step, enough for the 26 we keep
        # (the same characters as encoding the whole digest, at two thirds of the cost).
        return prefix + base64.b32encode(mac.digest()[:20])[:DIGEST_CHARS].lower().decode("ascii")
