"""The fixed catalogue of demo hospitals: sites, their units and dispensing cabinets.

Both demo systems and the world generator read this one catalogue, so a unit is spelled the
same everywhere it originates. The two systems then spell it differently on the wire: the
inventory system says ``ICU-3`` and the eMAR says ``ICU3`` (see :attr:`Unit.ward`).
"""
from __future__ import annotations

from dataclasses import dataclass

INVENTORY = "inventory"
ADMINISTRATION = "administration"
SYSTEMS = (INVENTORY, ADMINISTRATION)

PHARMACY = "PHARMACY"
"""The location code of a site's central pharmacy, where every container is first received."""

_UNIT_KINDS = {
    # prefix: (display name, cabinets per unit, relative administration volume)
    "ICU": ("Intensive Care Unit", 2, 6),
    "MEDSURG": ("Medical-Surgical", 2, 4),
    "ED": ("Emergency Department", 2, 4),
    "ONC": ("Oncology", 1, 3),
    "PEDS": ("Pediatrics", 1, 2),
    "CARD": ("Cardiology", 1, 3),
    "NEURO": ("Neurology", 1, 2),
    "NICU": ("Neonatal Intensive Care", 1, 1),
    "OR": ("Operating Room", 1, 1),
}


@dataclass(frozen=True)
class Unit:
    """A patient care unit and the dispensing cabinets on it."""

    code: str
    name: str
    cabinets: tuple[str, ...]
    volume: int

    @property
    def ward(self) -> str:
        """The eMAR's spelling of this unit: the same code without the dash (``ICU-3`` → ``ICU3``)."""
        return self.code.replace("-", "")


@dataclass(frozen=True)
class Site:
    """One hospital customer (a hub tenant) and the demo systems it runs."""

    slug: str
    facility: str
    name: str
    timezone: str
    systems: tuple[str, ...]
    administration_share: int
    units: tuple[Unit, ...]

    def has(self, system: str) -> bool:
        """Whether this site runs the given system."""
        return system in self.systems

    def unit_for_ward(self, ward: str) -> Unit | None:
        """The unit the eMAR calls ``ward``, if this site has it."""
        return next((unit for unit in self.units if unit.ward == ward), None)


def _units(counts: dict[str, int]) -> tuple[Unit, ...]:
    units = []
    for prefix, count in counts.items():
        display, cabinets, volume = _UNIT_KINDS[prefix]
        for number in range(1, count + 1):
            code = f"{prefix}-{number}"
            units.append(
                Unit(
                    code=code,
                    name=f"{display} {number}",
                    cabinets=tuple(f"{code}-CAB{n}" for n in range(1, cabinets + 1)),
                    volume=volume,
                )
            )
    return tuple(units)


SITES: tuple[Site, ...] = (
    Site(
        slug="north-general",
        facility="NGH",
        name="North General Hospital",
        timezone="America/New_York",
        systems=(INVENTORY, ADMINISTRATION),
        administration_share=40,
        units=_units({"ICU": 4, "MEDSURG": 6, "ED": 2, "ONC": 3, "PEDS": 2, "CARD": 2,
                      "NEURO": 1, "NICU": 1, "OR": 1}),
    ),
    Site(
        slug="river-valley",
        facility="RVH",
        name="River Valley Hospital",
        timezone="America/Chicago",
        systems=(INVENTORY, ADMINISTRATION),
        administration_share=35,
        units=_units({"ICU": 3, "MEDSURG": 7, "ED": 2, "ONC": 2, "PEDS": 1, "CARD": 2,
                      "NEURO": 2, "NICU": 1, "OR": 2}),
    ),
    Site(
        slug="lakeside-clinic",
        facility="LSC",
        name="Lakeside Clinic",
        timezone="America/Denver",
        systems=(ADMINISTRATION,),
        administration_share=25,
        units=_units({"ICU": 2, "MEDSURG": 6, "ED": 2, "ONC": 3, "PEDS": 2, "CARD": 2,
                      "NEURO": 1, "NICU": 1, "OR": 1}),
    ),
)

_BY_SLUG = {site.slug: site for site in SITES}
_BY_FACILITY = {site.facility: site for site in SITES}


def site_by_slug(slug: str | None) -> Site | None:
    """The site with this slug (``north-general``), or None."""
    return _BY_SLUG.get(slug or "")


def site_by_facility(facility: str | None) -> Site | None:
    """The site with this facility code (``NGH``), or None."""
    return _BY_FACILITY.get(facility or "")


def site_by_slug_or_facility(name: str | None) -> Site | None:
    """The site named either way; admin requests accept both spellings."""
    return site_by_slug(name) or site_by_facility(name)


def sites_running(system: str) -> tuple[Site, ...]:
    """The sites that run ``system``."""
    return tuple(site for site in SITES if site.has(system))
