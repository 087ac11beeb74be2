"""What every connector shares: the resolved connection it talks to, and record mapping that
skips (and counts) records it cannot map instead of passing them on half-mapped."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

import pybreaker
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from app.canonical.ndc import InvalidNdc
from app.canonical.times import InvalidTimestamp
from app.canonical.units import MAX_UNIT_CODE_LENGTH, InvalidUnitCode, canonical_unit
from app.connectors.resilience import CallPolicy

if TYPE_CHECKING:
    from app.connectors.registry import Connector
from app.observability import metrics

logger = logging.getLogger(__name__)

MAPPING_ERRORS = (KeyError, TypeError, ValueError, InvalidNdc, InvalidTimestamp, InvalidUnitCode,
                  ValidationError)


class ConnectionOptionsSchema(Schema):
    """Options every connection may carry: a code map for local unit codes that do not follow
    the canonical pattern, and the site's facility code. Connectors extend it."""

    class Meta:
        unknown = RAISE

    unit_codes = fields.Dict(keys=fields.String(validate=validate.Length(1, MAX_UNIT_CODE_LENGTH)),
                             values=fields.String(), load_default=dict)
    facility = fields.String(validate=validate.Length(1, 64))

    @validates("unit_codes")
    def _canonical_targets(self, unit_codes: dict, **_kwargs) -> None:
        wrong = sorted(native for native, unit in unit_codes.items()
                       if not _is_unit_code(unit))
        if wrong:
            raise ValidationError(f"not canonical unit codes for: {', '.join(wrong)}")


def _is_unit_code(value: str) -> bool:
    try:
        canonical_unit(value)
    except InvalidUnitCode:
        return False
    return True


@dataclass(frozen=True)
class ConnectionTarget:
    """A tenant's instance of a system, ready to call, with the connector that talks to it."""

    tenant: str
    product: str
    connector: Connector
    base_url: str
    credential: str = field(repr=False)
    timezone: str
    options: dict
    breaker: pybreaker.CircuitBreaker
    policy: CallPolicy

    def call(self, capability: str, *args, **kwargs):
        """Call this system's connector capability ``capability`` (app.connectors.registry)
        on this connection; raises ``UnsupportedCapability`` when the connector lacks it."""
        return self.connector.capability(capability)(self, *args, **kwargs)

    @property
    def unit_codes(self) -> dict[str, str]:
        """This tenant's native → canonical unit code map for this system."""
        return self.options.get("unit_codes") or {}

    def mapped_native_unit(self, unit: str) -> str | None:
        """The native code this tenant's code map gives for canonical ``unit``, if any."""
        for native, canonical in self.unit_codes.items():
            if canonical_unit(canonical) == unit:
                return native
        return None


@dataclass(frozen=True)
class ChangePage:
    """One page of a system's change feed, mapped to canonical.

    ``watermark`` is where the next read continues (opaque to the hub: only the connector
    knows what it means natively); it moves past records that could not be mapped too
    (``skipped``), so one bad record cannot hold a feed up. ``more`` says the feed already
    holds records past it.
    """

    records: list[dict]
    watermark: str
    skipped: int
    more: bool


def resource_url(base_url: str, *segments: str) -> str:
    """Return the URL of a resource under a system's ``base_url``: each segment is
    percent-encoded whole (``/``, ``#``, ``?``, ``%`` included), so an id is always one path
    segment and can neither reach another resource nor add a query. Query parameters go in
    ``params=``, never here."""
    for segment in segments:
        if not isinstance(segment, str) or segment in ("", ".", ".."):
            raise ValueError("a path segment is a non-empty string other than . and ..")
    return "/".join([base_url.rstrip("/"), *(quote(segment, safe="") for segment in segments)])


def checked(record: dict, schema: Schema) -> dict:
    """Return ``record`` (JSON-ready canonical values, unchanged) if it fits ``schema``."""
    errors = schema.validate(record)
    if errors:
        raise ValidationError(errors)
    return record


def map_records(native_records: Iterable[dict], mapper: Callable[[dict], dict], schema: Schema,
                *, system: str, resource: str) -> list[dict]:
    """Map each native record to canonical and validate it; skip (count, log without values)
    any record that fails, so nothing half-mapped goes further."""
    mapped = []
    for native in native_records:
        try:
            mapped.append(checked(mapper(native), schema))
        except MAPPING_ERRORS as error:
            metrics.INVALID_RECORDS.labels(system=system, resource=resource).inc()
            # The error class and the failing field names only: values may be PHI.
            fields = sorted(error.messages) if isinstance(error, ValidationError) else []
            logger.warning("skipped invalid %s record from %s: %s %s", resource, system,
                           type(error).__name__, fields)
    return mapped
