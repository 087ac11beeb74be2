"""Credentials of downstream systems, named by reference (``file:…`` or ``env:…``) in the
connections table and resolved here; the database never holds a credential."""

from __future__ import annotations

import os
import time
from pathlib import Path

# Re-read a credential file at most this often, so a rotated key is picked up without a
# restart while the hot path does not touch the disk on every call.
_REFRESH_SECONDS = 60.0
_resolved: dict[tuple[str, str], tuple[float, str]] = {}


NO_CREDENTIAL = "none"


class CredentialUnavailable(RuntimeError):
    """A credential reference cannot be resolved (the message names the reference kind only)."""


def resolve_credential(reference: str, secrets_dir: Path) -> str:
    """Return the credential ``reference`` names: ``file:relative/or/absolute/path`` (relative
    to the secrets folder) or ``env:VARIABLE``; ``none`` (a system that pushes to the hub and
    is never called) resolves to no credential."""
    if reference == NO_CREDENTIAL:
        return ""
    cache_key = (reference, str(secrets_dir))
    cached = _resolved.get(cache_key)
    if cached and time.monotonic() - cached[0] < _REFRESH_SECONDS:
        return cached[1]
    kind, _, name = reference.partition(":")
    if kind == "env":
        value = os.environ.get(name, "")
    elif kind == "file":
        path = Path(name) if Path(name).is_absolute() else secrets_dir / name
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError:
            raise CredentialUnavailable(f"credential file of a {kind} reference is unreadable") \
                from None
    else:
        raise CredentialUnavailable("credential references start with file: or env:")
    if not value:
        raise CredentialUnavailable(f"credential of a {kind} reference is empty")
    _resolved[cache_key] = (time.monotonic(), value)
    return value
