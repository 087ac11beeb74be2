"""The connector registry: every kind of hospital system the hub can talk to, found by name.

A connector is one way of talking to one kind of system: which product it implements
(``inventory``, ``administration``, ``pharmacy``, or a new one), how it talks (pulls over HTTP,
receives pushed HL7 v2, ...), the schema a tenant connection's options must fit, the canonical
capabilities it offers (functions such as ``administrations_page`` or ``unit_codes``, each
taking a ``ConnectionTarget``), the canonical events it emits and its health check.

Connectors are discovered through the Python entry-point group ``medication_hub.connectors``
(``importlib.metadata``): a separately installed package adds a system by declaring

    [project.entry-points."medication_hub.connectors"]
    acme-emar = "acme_emar.connector:CONNECTOR"

with no change to the hub. The hub's own connectors (Systems A, B and C) are loaded through the
same entry-point objects, from ``BUILT_IN`` below, so nothing in lookups, jobs or syncs knows
one system from another: they ask the tenant's connection for its connector and the connector
for a capability. docs/adding-a-system.md walks through adding one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from marshmallow import Schema, ValidationError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "medication_hub.connectors"

# The hub's own connectors, loaded exactly like an installed plug-in's entry point.
BUILT_IN = (
    EntryPoint("inventory-rest", "app.connectors.inventory:CONNECTOR", ENTRY_POINT_GROUP),
    EntryPoint("emar-rest", "app.connectors.administration:CONNECTOR", ENTRY_POINT_GROUP),
    EntryPoint("pharmacy-hl7v2", "app.connectors.pharmacy:CONNECTOR", ENTRY_POINT_GROUP),
    # System A's older API: the point-to-point link parallel runs compare the hub with.
    EntryPoint("inventory-legacy", "app.connectors.legacy_inventory:CONNECTOR",
               ENTRY_POINT_GROUP),
)

TRANSPORTS = frozenset({"http-pull", "hl7v2-push"})

# The canonical capabilities the hub calls, with the signature each is called with. A connector
# offers the subset its system supports; the hub asks for one by name and says clearly when the
# tenant's system lacks it (``UnsupportedCapability``).
CAPABILITIES = {
    "administrations_page": "(target, *, unit, ndc11, since, until, native_cursor, page_size)"
                            " -> (canonical administrations, next native cursor | None)",
    "iter_administrations": "(target, *, unit, ndc11, since, until) -> iterator of canonical "
                            "administrations",
    "container_origin": "(target, container_id) -> canonical container origin",
    "containers_on_hand": "(target, *, unit, ndc11, position, page_size) -> (canonical "
                          "containers, next position | None)",
    "dispensed_barcodes": "(target, *, unit, since, until) -> set of container barcodes",
    "dispensed_by_medication": "(target, *, unit, since, until) -> {NDC-11: containers "
                               "dispensed to the unit}",
    "unit_codes": "(target) -> canonical unit codes of the site",
    "location_catalogue": "(target) -> canonical location catalogue entries",
    "iter_container_pages": "(target) -> generator of canonical container pages",
    "iter_movement_pages": "(target, since) -> generator of (container id, movement) pages",
    # Change feeds (app.syncs.changes): a watermark is the connector's own opaque text.
    "administration_feed_head": "(target) -> watermark of the administrations feed now",
    "administration_feed_position_at": "(target, moment) -> watermark before what was charted "
                                       "at or after moment",
    "administrations_changed_since": "(target, watermark, limit) -> ChangePage of canonical "
                                     "administrations",
    "movement_feed_head": "(target) -> watermark of the movements feed now",
    "movement_feed_position_at": "(target, moment) -> watermark before what moved at or after "
                                 "moment",
    "movements_changed_since": "(target, watermark, limit) -> ChangePage of canonical "
                               "container movements (container with its movement)",
}


class UnknownConnector(LookupError):
    """No registered connector has this name."""


class UnsupportedCapability(LookupError):
    """The tenant's connector does not offer a capability the hub asked for."""

    def __init__(self, connector: str, capability: str):
        super().__init__(f"connector {connector} has no {capability}")
        self.connector = connector
        self.capability = capability


class InvalidConnectionOptions(ValueError):
    """A tenant connection's options do not fit its connector's options schema."""

    def __init__(self, messages: dict):
        super().__init__("the connection's options are invalid")
        self.messages = messages


@dataclass(frozen=True)
class Connector:
    """One kind of hospital system, as the hub talks to it."""

    name: str
    product: str
    title: str
    transport: str
    options_schema: type[Schema]
    capabilities: Mapping[str, Callable] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    health: Callable | None = None
    # Where the connector came from: the distribution that declared the entry point.
    source: str = "hub"

    def __post_init__(self):
        if self.transport not in TRANSPORTS:
            raise ValueError(f"connector {self.name}: unknown transport {self.transport!r}")
        unknown = set(self.capabilities) - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"connector {self.name}: unknown capabilities {sorted(unknown)}")

    def offers(self, capability: str) -> bool:
        """Tell whether this connector offers ``capability``."""
        return capability in self.capabilities

    def capability(self, name: str) -> Callable:
        """Return the function of capability ``name``; raise ``UnsupportedCapability``."""
        try:
            return self.capabilities[name]
        except KeyError:
            raise UnsupportedCapability(self.name, name) from None

    def checked_options(self, options: dict | None) -> dict:
        """Return ``options`` as the options schema loads them; raise
        ``InvalidConnectionOptions`` with field messages when they do not fit."""
        try:
            return self.options_schema().load(options or {})
        except ValidationError as invalid:
            raise InvalidConnectionOptions(invalid.messages) from None


def _load(entry_point: EntryPoint) -> Connector:
    connector = entry_point.load()
    if not isinstance(connector, Connector):
        raise TypeError(f"entry point {entry_point.name} is not a Connector")
    if connector.name != entry_point.name:
        raise ValueError(f"entry point {entry_point.name} declares connector {connector.name}")
    distribution = getattr(entry_point, "dist", None)
    if distribution is not None:
        connector = Connector(**{**connector.__dict__,
                                 "source": f"{distribution.name} {distribution.version}"})
    return connector


def discover(extra: Iterable[EntryPoint] = ()) -> dict[str, Connector]:
    """Load the built-in connectors and every installed plug-in's, by name.

    A plug-in that fails to load is logged and left out (one broken package must not stop the
    hub serving the other systems); a plug-in reusing a built-in's name is refused."""
    connectors: dict[str, Connector] = {}
    for entry_point in BUILT_IN:
        connector = _load(entry_point)
        connectors[connector.name] = connector
    for entry_point in [*entry_points(group=ENTRY_POINT_GROUP), *extra]:
        if entry_point.name in connectors:
            logger.error("connector plug-in %s refused: the name is taken", entry_point.name)
            continue
        try:
            connectors[entry_point.name] = _load(entry_point)
        except Exception as error:  # a plug-in's import can fail in any way; the hub goes on
            logger.error("connector plug-in %s failed to load: %s", entry_point.name,
                         type(error).__name__)
    return connectors


@cache
def registered() -> dict[str, Connector]:
    """Return the connectors of this process, discovered once."""
    return discover()


def forget_registered() -> None:
    """Discover again on the next call (after a plug-in is installed into a running process)."""
    registered.cache_clear()


def connector_named(name: str) -> Connector:
    """Return the registered connector called ``name``; raise ``UnknownConnector``."""
    try:
        return registered()[name]
    except KeyError:
        raise UnknownConnector(name) from None


def default_connector(product: str) -> Connector:
    """Return the hub's own connector of ``product`` (the one a connection without a named
    connector uses); raise ``UnknownConnector`` when the hub has none."""
    for connector in registered().values():
        if connector.product == product and connector.source == "hub":
            return connector
    raise UnknownConnector(product)


def products() -> dict[str, str]:
    """Return every product a registered connector implements, with a title for it."""
    titles: dict[str, str] = {}
    for connector in registered().values():
        titles.setdefault(connector.product, connector.title)
    return titles
