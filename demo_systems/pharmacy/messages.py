"""The pharmacy's orders as HL7 v2.5 messages, the way a legacy pharmacy system sends them.

Each order yields, in this order, the messages of what happened to it:

* ``RDE^O11`` (order): MSH PID PV1 ORC RXE RXR, at the order time;
* ``RDS^O13`` (dispense), unless never dispensed: MSH PID PV1 ORC RXE RXR RXD RXR;
* ``RAS^O17`` (administration), unless never charted: MSH PID PV1 ORC RXA RXR.

Fields the hub relies on (all standard v2.5 fields):

* MSH-3/4 sending application ``DEMO-PHARMACY`` / the site's facility code (``NGH``), MSH-5/6
  ``MEDHUB``/``MEDHUB``, MSH-7 the event time, MSH-10 a control id unique in the world
  (``PH`` + order id + ``O``/``D``/``A``), MSH-11 ``P``, MSH-12 ``2.5``;
* PID-3 MRN (``MRN12345678^^^NGH^MR``), PID-5 ``Last^First``, PID-7 birth date ``YYYYMMDD``;
* PV1-3 the patient's unit as point of care (``ICU-3^^^NGH``; the catalogue's spelling);
* ORC-2 placer order number (``RX0000000042^DEMO-PHARMACY``), shared by an order's messages;
* RXE-2 / RXD-2 / RXA-5 the medication as ``<NDC-11>^<description>^NDC``; RXE-3, RXD-4 and
  RXA-6 the dose quantity; RXE-5, RXD-5 and RXA-7 its unit (``mg``, ``mcg``, ``units``, ``mL``);
* RXD-3 dispense time, RXD-7 prescription number (the order number), RXD-13 dispense-to location
  (the unit, ``ICU-3^^^NGH``); RXA-3 administration time, RXA-11 administered-at location;
  RXR-1 route.

Times are UTC with an explicit ``+0000``. Segments end with a carriage return.
"""
from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from demo_systems.pharmacy.store import SENDING_APPLICATION, orders_from

RECEIVING_APPLICATION = "MEDHUB"
RECEIVING_FACILITY = "MEDHUB"

ORDER, DISPENSE, ADMINISTRATION = "O", "D", "A"
MESSAGE_TYPES = {ORDER: "RDE^O11^RDE_O11", DISPENSE: "RDS^O13^RDS_O13",
                 ADMINISTRATION: "RAS^O17^RAS_O17"}

DUPLICATE_EVERY = 40
"""Every order whose id is a multiple of this has its last message sent twice (same MSH-10),
the way a legacy system resends after a lost ACK."""
MALFORMED_EVERY = 97
"""Every order whose id is a multiple of this is followed by one malformed message."""
MALFORMED_KINDS = ("bad-encoding-characters", "truncated-segment", "unknown-message-type")


@dataclass(frozen=True)
class OutboundMessage:
    """One message of the demo stream: its bytes, control id and what it is (for the logs)."""

    control_id: str
    kind: str
    """``RDE^O11``, ``RDS^O13``, ``RAS^O17``, ``duplicate`` or a malformed kind."""
    text: str

    def encoded(self) -> bytes:
        """The bytes that go inside the MLLP frame."""
        return self.text.encode("utf-8")


def _timestamp(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y%m%d%H%M%S+0000")


def _quantity(value: float) -> str:
    return f"{value:g}"


def order_messages(order: sqlite3.Row) -> list[OutboundMessage]:
    """The messages of one order (see the module docstring), duplicates and malformed included."""
    facility = order["facility"]
    number = f"RX{order['id']:010d}"
    location = f"{order['unit']}^^^{facility}"
    medication = f"{order['ndc11']}^{order['description']}^NDC"
    quantity = _quantity(order["quantity"])
    uom = order["uom"]
    patient = (f"PID|1||{order['mrn']}^^^{facility}^MR||{order['last_name']}^{order['first_name']}"
               f"||{order['birth_date'].replace('-', '')}")
    visit = f"PV1|1|I|{location}"
    route = f"RXR|{order['route']}"
    give = f"RXE||{medication}|{quantity}||{uom}"

    def message(step: str, epoch: int, control: str, *segments: str) -> OutboundMessage:
        header = (f"MSH|^~\\&|{SENDING_APPLICATION}|{facility}|{RECEIVING_APPLICATION}|"
                  f"{RECEIVING_FACILITY}|{_timestamp(epoch)}||{MESSAGE_TYPES[step]}|{control}|P|2.5")
        return OutboundMessage(control_id=control, kind=MESSAGE_TYPES[step].rsplit("^", 1)[0],
                               text="\r".join((header, patient, visit, *segments)) + "\r")

    ordered = order["ordered_epoch"]
    messages = [message(ORDER, ordered, f"PH{order['id']:010d}{ORDER}",
                        f"ORC|NW|{number}^{SENDING_APPLICATION}|||||||{_timestamp(ordered)}",
                        give, route)]
    dispensed = order["dispensed_epoch"]
    if dispensed is not None:
        messages.append(message(
            DISPENSE, dispensed, f"PH{order['id']:010d}{DISPENSE}",
            f"ORC|RE|{number}^{SENDING_APPLICATION}", give, route,
            f"RXD|1|{medication}|{_timestamp(dispensed)}|{quantity}|{uom}||{number}||||||{location}",
            route))
    given = order["given_epoch"]
    if given is not None:
        messages.append(message(
            ADMINISTRATION, given, f"PH{order['id']:010d}{ADMINISTRATION}",
            f"ORC|RE|{number}^{SENDING_APPLICATION}",
            f"RXA|0|1|{_timestamp(given)}|{_timestamp(given)}|{medication}|{quantity}|{uom}"
            f"||||{location}",
            route))
    if order["id"] % DUPLICATE_EVERY == 0:
        last = messages[-1]
        messages.append(OutboundMessage(control_id=last.control_id, kind="duplicate", text=last.text))
    if order["id"] % MALFORMED_EVERY == 0:
        messages.append(malformed(messages[0], MALFORMED_KINDS[
            (order["id"] // MALFORMED_EVERY) % len(MALFORMED_KINDS)]))
    return messages


def malformed(original: OutboundMessage, kind: str) -> OutboundMessage:
    """A broken copy of ``original`` with its own control id; the hub must refuse it with a reason."""
    control = f"{original.control_id}X"
    text = original.text.replace(f"|{original.control_id}|", f"|{control}|", 1)
    if kind == "bad-encoding-characters":
        text = "MSH|#~\\&" + text[len("MSH|^~\\&"):]
    elif kind == "truncated-segment":
        # Cut inside RXE, half-way through the NDC: the rest of the message never arrived.
        text = text[:text.index("\rRXE|") + len("\rRXE||") + 5]
    elif kind == "unknown-message-type":
        text = text.replace("|RDE^O11^RDE_O11|", "|ZPH^Z01^ZPH_Z01|", 1)
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return OutboundMessage(control_id=control, kind=kind, text=text)


def stream(connection: sqlite3.Connection, *, after: tuple[int, int] = (0, 0),
           facilities: tuple[str, ...] | None = None) -> Iterator[tuple[tuple[int, int], OutboundMessage]]:
    """Every message from position ``after`` on, each with the position to resume after it.

    A position is ``(order id, messages of that order already sent)``; orders are read lazily
    from the database, so a million-dose world is never held in memory.
    """
    order_id, already_sent = after
    for order in orders_from(connection, max(order_id, 1), facilities=facilities):
        messages = order_messages(order)
        skip = already_sent if order["id"] == order_id else 0
        for index in range(skip, len(messages)):
            yield (order["id"], index + 1), messages[index]

