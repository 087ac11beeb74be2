"""Connector of the legacy pharmacy system (System C), which speaks only HL7 v2.5.

It has no API: it pushes messages to the hub (MLLP listener, ``POST /v1/hl7``). This module is
the only place that knows which segment and field of its messages holds what; the generic
reading, checks and acknowledgements are :mod:`app.hl7.messages`.

Messages and their mapping (docs/hl7.md has the table):

* ``RDE^O11`` pharmacy order → canonical medication order (``MedicationOrderSchema``);
* ``RDS^O13`` dispense → canonical dispense (``DispenseSchema``);
* ``RAS^O17`` administration → canonical administration, System B's shape
  (``HeardAdministrationSchema``).

PID is read for the MRN only (PID-3, the ``MR`` identifier) and, for administrations, the name
and birth date System B's shape has; they stay in memory, and the PHI policy turns the MRN into
the tenant pseudonym before anything is stored. Addresses and the rest of PID are never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import hl7
from marshmallow import Schema, fields, validate

from app.canonical.ndc import InvalidNdc, normalize_ndc
from app.canonical.schemas import DispenseSchema, HeardAdministrationSchema, MedicationOrderSchema
from app.canonical.times import InvalidTimestamp, format_utc, to_utc
from app.canonical.units import InvalidUnitCode, canonical_unit
from app.hl7.messages import Inbound, Refusal, Structure, field, parse_timestamp
from app.pharmacy.models import SENDER_FIELD_LENGTH

SYSTEM = "pharmacy"
EVENTS = ("order.placed", "dispense.recorded", "administration.recorded")

ORDER, DISPENSE, ADMINISTRATION = "medication_order", "dispense", "administration"
"""Resource types of the canonical records (and of their PHI policies)."""

STRUCTURES: dict[tuple[str, str], Structure] = {
    ("RDE", "O11"): Structure("RDE_O11", ("MSH", "PID", "ORC", "RXE", "RXR")),
    ("RDS", "O13"): Structure("RDS_O13", ("MSH", "PID", "ORC", "RXD", "RXR")),
    ("RAS", "O17"): Structure("RAS_O17", ("MSH", "PID", "ORC", "RXA", "RXR")),
}
"""The messages System C sends and the segments the hub needs in each (PID is optional in
HL7, but a record without a patient is of no use to reconciliation)."""

RESOURCE_OF = {"RDE": ORDER, "RDS": DISPENSE, "RAS": ADMINISTRATION}
MEDICATION_CODING_SYSTEMS = frozenset({"", "NDC", "N4"})
"""CE-3 values that say the code is an NDC (empty: System C's messages carry NDCs)."""
MAX_TEXT = 200
SHORT_TEXT = 32
"""Longest dose unit and route the hub keeps (their columns' width)."""


class SenderSchema(Schema):
    """One sending application at one facility, as MSH-3 and MSH-4 name them."""

    application = fields.String(required=True,
                                validate=validate.Length(min=1, max=SENDER_FIELD_LENGTH))
    facility = fields.String(required=True,
                             validate=validate.Length(min=1, max=SENDER_FIELD_LENGTH))


class OptionsSchema(Schema):
    """Options of a tenant's pharmacy connection: who sends for it, and its unit code map."""

    senders = fields.List(fields.Nested(SenderSchema), required=True,
                          validate=validate.Length(min=1))
    unit_codes = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    # The site's facility code, which every connection of a demo site carries.
    facility = fields.String(load_default=None, validate=validate.Length(max=64))


@dataclass(frozen=True)
class Site:
    """What the mapping needs of the tenant's connection: its clock and its unit codes."""

    timezone: str = "UTC"
    unit_codes: dict | None = None


def _refuse(error_code: str, reason: str, location: str) -> Refusal:
    # AE: the message was well formed and of a supported type, its content is not usable.
    return Refusal(error_code, reason, ack_code="AE", location=location)


class _Reader:
    """Reads fields of one message, refusing (AE) with the field's position when one is bad."""

    def __init__(self, message: hl7.Message, site: Site) -> None:
        self.message = message
        self.site = site

    def text(self, segment: str, number: int, component: int = 1, *, required: bool = True,
             sequence: int = 1, repetition: int = 1, max_length: int = MAX_TEXT) -> str | None:
        value = field(self.message, segment, number, component, sequence=sequence,
                      repetition=repetition)
        if not value:
            if required:
                raise _refuse("101", f"{segment}-{number} is missing.",
                              f"{segment}^{sequence}^{number}")
            return None
        if len(value) > max_length:
            raise _refuse("102", f"{segment}-{number} is too long.",
                          f"{segment}^{sequence}^{number}")
        return value

    def quantity(self, segment: str, number: int) -> float:
        value = self.text(segment, number)
        try:
            quantity = float(value)
        except ValueError:
            quantity = -1.0
        if not 0 < quantity < 1e9:
            raise _refuse("102", f"{segment}-{number} is not a positive number.",
                          f"{segment}^1^{number}")
        return quantity

    def moment(self, segment: str, number: int) -> str:
        value = self.text(segment, number)
        try:
            return format_utc(to_utc(parse_timestamp(value), self.site.timezone))
        except (ValueError, InvalidTimestamp):
            raise _refuse("102", f"{segment}-{number} is not a timestamp to the minute.",
                          f"{segment}^1^{number}") from None

    def unit(self, *places: tuple[str, int]) -> str:
        for segment, number in places:
            value = self.text(segment, number, required=False)
            if value:
                try:
                    return canonical_unit(value, self.site.unit_codes)
                except InvalidUnitCode:
                    raise _refuse("103", f"{segment}-{number} is not a known unit code.",
                                  f"{segment}^1^{number}") from None
        segment, number = places[0]
        raise _refuse("101", f"{segment}-{number} (the unit) is missing.", f"{segment}^1^{number}")

    def medication(self, segment: str, number: int) -> dict:
        coding = (self.text(segment, number, 3, required=False) or "").upper()
        if coding not in MEDICATION_CODING_SYSTEMS:
            raise _refuse("103", f"{segment}-{number} must be coded as an NDC.",
                          f"{segment}^1^{number}")
        try:
            ndc11 = normalize_ndc(self.text(segment, number, 1))
        except InvalidNdc:
            raise _refuse("102", f"{segment}-{number} is not an NDC.",
                          f"{segment}^1^{number}") from None
        name = self.text(segment, number, 2, required=False) or ndc11
        return {"ndc11": ndc11, "name": name}

    def order_number(self) -> str:
        # ORC-2 placer order number; ORC-3 filler order number when the placer's is absent.
        number = self.text("ORC", 2, required=False) or self.text("ORC", 3, required=False)
        if not number:
            raise _refuse("101", "ORC-2 (the order number) is missing.", "ORC^1^2")
        if len(number) > SENDER_FIELD_LENGTH:
            raise _refuse("102", "ORC-2 is too long.", "ORC^1^2")
        return number

    def mrn(self) -> str:
        # PID-3 repeats (MRN, national ids, ...): the MR identifier, else the first one.
        for repetition in range(1, 6):
            if field(self.message, "PID", 3, 5, repetition=repetition).upper() == "MR":
                return self.text("PID", 3, 1, repetition=repetition)
        return self.text("PID", 3, 1)


def _order(read: _Reader) -> dict:
    return {
        "order_number": read.order_number(),
        "unit": read.unit(("PV1", 3)),
        "medication": read.medication("RXE", 2),
        "dose": {"quantity": read.quantity("RXE", 3), "unit": read.text("RXE", 5, max_length=SHORT_TEXT)},
        "route": read.text("RXR", 1, required=False, max_length=SHORT_TEXT),
        "ordered_at": read.moment("ORC", 9) if read.text("ORC", 9, required=False)
        else read.moment("MSH", 7),
        "patient": {"mrn": read.mrn()},
    }


def _dispense(read: _Reader) -> dict:
    order_number = read.order_number()
    sub_id = read.text("RXD", 1, required=False) or "1"
    return {
        "dispense_id": f"{order_number}-{sub_id}"[:SENDER_FIELD_LENGTH],
        "order_number": order_number,
        "unit": read.unit(("RXD", 13), ("PV1", 3)),
        "medication": read.medication("RXD", 2),
        "dose": {"quantity": read.quantity("RXD", 4), "unit": read.text("RXD", 5, max_length=SHORT_TEXT)},
        # The RXR after RXD when the message has two (RDS: one under RXE, one under RXD).
        "route": read.text("RXR", 1, required=False, max_length=SHORT_TEXT,
                           sequence=len(read.message.segments("RXR"))),
        "dispensed_at": read.moment("RXD", 3),
        # RXD-25 supplementary code: the barcode of the container dispensed, when sent.
        "container_barcode": read.text("RXD", 25, required=False,
                                       max_length=SENDER_FIELD_LENGTH),
        "patient": {"mrn": read.mrn()},
    }


def _administration(read: _Reader) -> dict:
    order_number = read.order_number()
    sub_id = read.text("RXA", 2, required=False) or "1"
    return {
        "administration_id": f"{order_number}-{sub_id}"[:SENDER_FIELD_LENGTH],
        "unit": read.unit(("RXA", 11), ("PV1", 3)),
        "medication": read.medication("RXA", 5),
        "dose": {"quantity": read.quantity("RXA", 6), "unit": read.text("RXA", 7, max_length=SHORT_TEXT)},
        "route": read.text("RXR", 1, max_length=SHORT_TEXT),
        "administered_at": read.moment("RXA", 3),
        # RXA-25 administered barcode identifier (v2.5), when the nurse scanned one.
        "container_barcode": read.text("RXA", 25, required=False,
                                       max_length=SENDER_FIELD_LENGTH),
        "nurse_id": read.text("RXA", 10, required=False, max_length=SENDER_FIELD_LENGTH),
        "patient": {"mrn": read.mrn(), "name": _patient_name(read),
                    "birth_date": _birth_date(read)},
        "note": None,
    }


def _patient_name(read: _Reader) -> str | None:
    family = field(read.message, "PID", 5, 1)
    given = field(read.message, "PID", 5, 2)
    return " ".join(part for part in (given, family) if part) or None


def _birth_date(read: _Reader) -> str | None:
    # Never stored (the policy drops it): a malformed one is left out rather than refusing
    # the dose over it.
    value = field(read.message, "PID", 7)[:8]
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8])).isoformat()
    except ValueError:
        return None


_MAPPERS = {ORDER: (_order, MedicationOrderSchema()), DISPENSE: (_dispense, DispenseSchema()),
            ADMINISTRATION: (_administration, HeardAdministrationSchema())}


def canonical_record(inbound: Inbound, site: Site) -> tuple[str, dict, str]:
    """Return (resource type, canonical record, order number) for a checked message of
    :data:`STRUCTURES` (the canonical administration has no order number; the hub keeps it
    to tie the three messages of one order together).

    Raises :class:`Refusal` (``AE``) naming the first field that cannot be mapped; the
    record (PHI included) exists only in the caller's memory."""
    resource = RESOURCE_OF[inbound.header.message_code]
    mapper, schema = _MAPPERS[resource]
    read = _Reader(inbound.message, site)
    order_number = read.order_number()
    record = mapper(read)
    errors = schema.validate(record)
    if errors:
        # Field names only: the values may be patient data.
        raise _refuse("102", "The message maps to an invalid record: "
                             f"{', '.join(sorted(_paths(errors)))}.", "")
    return resource, record, order_number


def _paths(errors: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in errors.items():
        if isinstance(value, dict):
            paths.extend(_paths(value, f"{prefix}{key}."))
        else:
            paths.append(f"{prefix}{key}")
    return paths


def sender_options(options: dict) -> dict:
    """Return the connection's options checked by :class:`OptionsSchema` (raises
    ``marshmallow.ValidationError``)."""
    return OptionsSchema().load(options or {})

