"""Per-site API keys of the demo systems, derived from the world seed.

Deriving rather than storing means a server only needs the seed (from ``manifest.json``) to know
every key, and re-seeding with the same seed hands the hub the same keys again.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from demo_systems.sites import SITES


def api_key(seed: int, system: str, site: str) -> str:
    """The API key that ``site`` uses to call ``system`` in the world seeded with ``seed``."""
    digest = hmac.new(b"demo-systems/api-key", f"{seed}/{system}/{site}".encode(), hashlib.sha256)
    return "dk_" + digest.hexdigest()[:40]


def key_file(keys_dir: Path, system: str, site: str) -> Path:
    """Where the key file of ``site`` for ``system`` lives: ``<keys_dir>/<system>-<site>.key``."""
    return keys_dir / f"{system}-{site}.key"


def write_key_files(seed: int, keys_dir: Path) -> dict[tuple[str, str], Path]:
    """Write one owner-only key file per site and system it runs; return their absolute paths."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for site in SITES:
        for system in site.systems:
            path = key_file(keys_dir, system, site.slug).resolve()
            # Create with 0600 from the start so the secret is never briefly world-readable,
            # and chmod in case an older file with looser bits is being overwritten.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(api_key(seed, system, site.slug))
            os.chmod(path, 0o600)
            written[(system, site.slug)] = path
    return written
