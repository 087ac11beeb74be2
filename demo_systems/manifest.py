"""``<data-dir>/manifest.json``: what a seed run produced, for the hub and for the servers.

The hub's own seeding reads it to create tenants and connections; a demo server reads the seed
from it to derive the per-site API keys it accepts.
"""
from __future__ import annotations

import json
from pathlib import Path

from demo_systems.pharmacy.store import PHARMACY_SITES, PRODUCT, SENDING_APPLICATION
from demo_systems.sites import ADMINISTRATION, INVENTORY, SITES, Site

FILE_NAME = "manifest.json"

API_PATHS = {
    INVENTORY: "/api/v2/sites/{site.slug}",
    ADMINISTRATION: "/emar/v1/facilities/{site.facility}",
}


def build(seed: int, key_files: dict[tuple[str, str], Path]) -> dict:
    """The manifest of a world: its seed, and per site the systems it runs: for the HTTP systems
    their key file and API path, for the pharmacy (which pushes HL7 to the hub) the senders the
    hub must map to the site's tenant."""
    return {
        "seed": seed,
        "sites": [
            {
                "site": site.slug,
                "facility": site.facility,
                "name": site.name,
                "timezone": site.timezone,
                "systems": {
                    system: {"key_file": str(key_files[(system, site.slug)]),
                             "path": API_PATHS[system].format(site=site)}
                    for system in site.systems
                } | _pushing_systems(site),
            }
            for site in SITES
        ],
    }


def write(path: Path, manifest: dict) -> None:
    """Write a manifest file."""
    path.write_text(json.dumps(manifest, indent=2))


def read(data_dir: Path) -> dict:
    """The manifest a seed run wrote into ``data_dir``."""
    path = Path(data_dir) / FILE_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run `python -m demo_systems seed` first")
    return json.loads(path.read_text())


def _pushing_systems(site: Site) -> dict:
    if site not in PHARMACY_SITES:
        return {}
    return {PRODUCT: {"options": {"senders": [
        {"application": SENDING_APPLICATION, "facility": site.facility}]}}}
