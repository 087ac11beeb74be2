"""The canonical event types: which resource each carries, where its id and filter fields are,
and the scope a subscriber needs to receive the full (minimized) payload rather than the
id-only notification."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.phi.policy import value_at


@dataclass(frozen=True)
class EventType:
    """One kind of event: its resource type (a PHI-policy resource), the read scope that
    unlocks its full payload, and the canonical paths of its id, unit and medication."""

    name: str
    resource_type: str
    scope: str
    id_path: tuple[str, ...]
    unit_path: tuple[str, ...]
    ndc11_path: tuple[str, ...] = ("medication", "ndc11")
    description: str = ""

    def read(self, record: Mapping, path: tuple[str, ...]) -> Any:
        """The value at ``path`` of a canonical (or stored) record, or None."""
        return value_at(record, path)


EVENT_TYPES: dict[str, EventType] = {kind.name: kind for kind in (
    EventType("administration.recorded", "administration", "administrations:read",
              ("administration_id",), ("unit",),
              description="A dose was charted in the eMAR (System B, or an HL7 RAS^O17)."),
    EventType("dispense.recorded", "dispense", "dispenses:read", ("dispense_id",), ("unit",),
              description="The pharmacy dispensed a medication (HL7 RDS^O13)."),
    EventType("order.placed", "medication_order", "orders:read", ("order_number",), ("unit",),
              description="A medication order reached the pharmacy (HL7 RDE^O11)."),
    EventType("container.moved", "container_movement", "inventory:read", ("container_id",),
              ("location", "unit"),
              description="A container was received, stocked or dispensed (System A)."),
)}
"""Event type name → its description. Adding a type needs a PHI policy for its resource
(``app.phi.policy``: the event store's and each subscriber consumer's)."""
