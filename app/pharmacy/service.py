"""The pharmacy's data in the hub: HL7 v2 messages received, and what the stored ones carried.

:func:`receive_message` is the one way a message comes in, over MLLP or HTTP: read and check
it, find the sender's tenant, drop a resent control id, map, minimize and store, all in one
transaction, and answer with the ACK (``AA`` only after the commit).

Reads for other parts of the hub (reconciliation, events) go through :func:`dispensed_totals`
and :func:`iter_dispenses`; they return pseudonymized records only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from app.canonical.times import format_utc, to_utc
from app.connectors import pharmacy as connector
from app.database import utcnow
from app.entitlements.service import tenant_owns_product
from app.events.service import notify_published, publish
from app.hl7.messages import Header, Inbound, Refusal, acknowledgement, read_message, refusal_acknowledgement
from app.observability import metrics
from app.pharmacy.models import (
    SENDER_FIELD_LENGTH,
    Hl7Message,
    PharmacyAdministration,
    PharmacyDispense,
    PharmacyOrder,
)
from app.phi.policy import minimize
from app.phi.pseudonyms import Pseudonymizer, tenant_pseudonym_key
from app.problems import Outage, Problem, outage_of
from app.settings import Settings
from app.tenants.models import Connection, Product, Tenant

logger = logging.getLogger(__name__)

PRODUCT = "pharmacy"
TRANSPORTS = ("mllp", "http")
UNREADABLE = "unreadable"
"""The message_type label of a message whose MSH-9 could not be read."""

ITER_BATCH = 1000


def _dispense_window(*, tenant_id: uuid.UUID, unit: str | None, since: datetime | None,
                     until: datetime | None, ndc11: str | None = None):
    # Stored times are UTC; SQLite compares them as text, so the window is UTC too. A filter
    # that is None is not applied.
    conditions = [PharmacyDispense.tenant_id == tenant_id]
    if since is not None:
        conditions.append(PharmacyDispense.dispensed_at >= to_utc(since))
    if until is not None:
        conditions.append(PharmacyDispense.dispensed_at < to_utc(until))
    if unit is not None:
        conditions.append(PharmacyDispense.unit == unit)
    if ndc11 is not None:
        conditions.append(PharmacyDispense.ndc11 == ndc11)
    return conditions


def dispensed_totals(*, db_session: Session, tenant_id: uuid.UUID, unit: str | None,
                     since: datetime, until: datetime) -> dict[tuple[str, str], dict]:
    """Return what the pharmacy dispensed in ``[since, until)``, per (unit, NDC-11):
    ``{"dispenses": n, "quantity": total, "dose_unit": unit}`` (all units when ``unit`` is None).

    A medication dispensed in two dose units (rare, a sender's mistake) keeps the one most
    dispenses used; quantities in another unit are not added to it."""
    rows = db_session.execute(
        select(PharmacyDispense.unit, PharmacyDispense.ndc11, PharmacyDispense.dose_unit,
               func.count(), func.sum(PharmacyDispense.quantity))
        .where(*_dispense_window(tenant_id=tenant_id, unit=unit, since=since, until=until))
        .group_by(PharmacyDispense.unit, PharmacyDispense.ndc11, PharmacyDispense.dose_unit))
    totals: dict[tuple[str, str], dict] = {}
    for row_unit, ndc11, dose_unit, count, quantity in rows:
        known = totals.get((row_unit, ndc11))
        if known is None or count > known["dispenses"]:
            totals[(row_unit, ndc11)] = {"dispenses": int(count), "quantity": float(quantity or 0),
                                         "dose_unit": dose_unit}
    return totals


def dispense_record(row: PharmacyDispense) -> dict:
    """Return a stored dispense as a canonical, pseudonymized record (what consumers see)."""
    return {
        "dispense_id": row.dispense_id,
        "order_number": row.order_number,
        "unit": row.unit,
        "medication": {"ndc11": row.ndc11, "name": row.medication_name},
        "dose": {"quantity": row.quantity, "unit": row.dose_unit},
        "route": row.route,
        "dispensed_at": format_utc(to_utc(row.dispensed_at)),
        "container_barcode": row.container_barcode,
        "patient": {"ref": row.patient_pseudonym},
    }


def dispenses_page(*, db_session: Session, tenant_id: uuid.UUID, unit: str | None,
                   ndc11: str | None, since: datetime | None, until: datetime | None,
                   after: tuple[datetime, uuid.UUID] | None, page_size: int
                   ) -> tuple[list[dict], tuple[datetime, uuid.UUID] | None]:
    """Return a page of the tenant's stored dispenses, oldest first (canonical, pseudonymized:
    :func:`dispense_record`), and the position after its last one (None on the last page).
    The position is (dispense time, row id): a keyset, so a page costs the same however deep."""
    conditions = _dispense_window(tenant_id=tenant_id, unit=unit, since=since, until=until,
                                  ndc11=ndc11)
    if after is not None:
        at, row_id = to_utc(after[0]), after[1]
        conditions.append((PharmacyDispense.dispensed_at > at)
                          | ((PharmacyDispense.dispensed_at == at)
                             & (PharmacyDispense.id > row_id)))
    rows = list(db_session.scalars(
        select(PharmacyDispense).where(*conditions)
        .order_by(PharmacyDispense.dispensed_at, PharmacyDispense.id).limit(page_size + 1)))
    more = len(rows) > page_size
    rows = rows[:page_size]
    position = (to_utc(rows[-1].dispensed_at), rows[-1].id) if more else None
    return [dispense_record(row) for row in rows], position


def iter_dispenses(*, db_session: Session, tenant_id: uuid.UUID, unit: str | None,
                   since: datetime, until: datetime) -> Iterator[dict]:
    """Yield the tenant's dispenses in ``[since, until)``, oldest first, as canonical
    pseudonymized records (:func:`dispense_record`), reading a batch of rows at a time."""
    query = (select(PharmacyDispense)
             .where(*_dispense_window(tenant_id=tenant_id, unit=unit, since=since, until=until))
             .order_by(PharmacyDispense.dispensed_at, PharmacyDispense.id)
             .execution_options(yield_per=ITER_BATCH))
    for row in db_session.scalars(query):
        yield dispense_record(row)


def list_receipts(*, db_session: Session, tenant_id: uuid.UUID | None, ack_code: str | None,
                  limit: int) -> list[Hl7Message]:
    """Return the latest message receipts, newest first: of one tenant or all, of one ACK code
    or all (sender, control id, type, outcome, error code; never message content)."""
    query = select(Hl7Message).order_by(Hl7Message.received_at.desc(), Hl7Message.id)
    if tenant_id is not None:
        query = query.where(Hl7Message.tenant_id == tenant_id)
    if ack_code is not None:
        query = query.where(Hl7Message.ack_code == ack_code)
    return list(db_session.scalars(query.limit(limit)))


# --- senders and tenants ------------------------------------------------------------------

def _claims(connection: Connection) -> set[tuple[str, str]]:
    senders = (connection.options or {}).get("senders") or []
    return {(str(sender.get("application", "")), str(sender.get("facility", "")))
            for sender in senders if isinstance(sender, dict)}


def sender_connection(*, db_session: Session, application: str, facility: str
                      ) -> Connection | None:
    """Return the active pharmacy connection of an active tenant whose options name this
    sender (MSH-3 and MSH-4 namespace ids, compared exactly), or None: never guessed."""
    connections = db_session.scalars(
        select(Connection).join(Product, Product.id == Connection.product_id)
        .join(Tenant, Tenant.id == Connection.tenant_id)
        .where(Product.code == PRODUCT, Connection.is_active.is_(True),
               Tenant.is_active.is_(True)))
    for connection in connections:
        if (application, facility) in _claims(connection):
            return connection
    return None


def check_sender_claims(*, db_session: Session, tenant_id: uuid.UUID, options: dict) -> dict:
    """Check a pharmacy connection's options before they are saved: their shape
    (:class:`app.connectors.pharmacy.OptionsSchema`, raising ``marshmallow.ValidationError``)
    and that no other tenant's connection already claims one of the senders (409 Problem
    ``hl7-sender-claimed``). Returns the loaded options."""
    loaded = connector.OptionsSchema().load(options or {})
    wanted = {(sender["application"], sender["facility"]) for sender in loaded["senders"]}
    others = db_session.scalars(
        select(Connection).join(Product, Product.id == Connection.product_id)
        .where(Product.code == PRODUCT, Connection.tenant_id != tenant_id))
    for connection in others:
        if wanted & _claims(connection):
            raise Problem("Another tenant's pharmacy connection already receives messages "
                          "from this sending application and facility.", status=409,
                          problem_type="hl7-sender-claimed")
    return loaded


# --- receiving a message ----------------------------------------------------------------------

HL7_MEDIA_TYPES = ("application/hl7-v2", "x-application/hl7-v2+er7", "text/plain")
"""Bodies ``POST /v1/hl7`` reads as one HL7 v2 message (ER7, the pipe-delimited encoding)."""
ACK_MEDIA_TYPE = "application/hl7-v2"


def receive_http_message(*, db_session: Session, settings: Settings, media_type: str,
                         body: bytes, tenant_id: uuid.UUID) -> bytes:
    """Take one message posted to ``POST /v1/hl7`` by a client of ``tenant_id``: refuse what
    is not an HL7 v2 message at all (415 for another media type, 400 ``not-hl7`` for a body
    that does not begin with MSH), then :func:`receive_message` with the tenant check. Every
    message answers with its ACK, ``AR``/``AE`` included (the HTTP exchange itself worked)."""
    if media_type not in HL7_MEDIA_TYPES:
        raise Problem("The body must be one HL7 v2 message: application/hl7-v2 (or "
                      "x-application/hl7-v2+er7, text/plain).", status=415)
    if not body.lstrip(b"\r\n\t ").startswith(b"MSH"):
        raise Problem("The body is not an HL7 v2 message: it does not begin with an MSH "
                      "segment.", status=400, problem_type="not-hl7")
    return receive_message(db_session=db_session, settings=settings, raw=body,
                           transport="http", tenant_id=tenant_id)


def _pseudonymizer(settings: Settings, tenant_id: uuid.UUID) -> Pseudonymizer:
    return Pseudonymizer(tenant_pseudonym_key(settings.hub_pseudonym_key, str(tenant_id)))


def _loggable(header: Header | None) -> dict:
    # Sender names and control ids are no patient data; they let an operator find the message.
    if header is None:
        return {}
    return {"sender_application": header.sender_application[:SENDER_FIELD_LENGTH],
            "sender_facility": header.sender_facility[:SENDER_FIELD_LENGTH],
            "control_id": header.control_id[:SENDER_FIELD_LENGTH],
            "message_type": header.message_type[:32]}


def _receipt_key(header: Header | None) -> tuple[str, str, str] | None:
    if header is None:
        return None
    key = (header.sender_application, header.sender_facility, header.control_id)
    if not all(key) or any(len(part) > SENDER_FIELD_LENGTH for part in key):
        return None
    return key


def _message_type_label(header: Header | None) -> str:
    if header is None or not header.message_code:
        return UNREADABLE
    # Bounded label values: a sender cannot grow the metric's series with made-up types.
    if (header.message_code, header.trigger) in connector.STRUCTURES:
        return header.message_type
    return "other"


def _answer(*, transport: str, header: Header | None, ack_code: str, ack: str,
            error_code: str | None = None, reason: str = "", duplicate: bool = False) -> bytes:
    metrics.HL7_MESSAGES.labels(transport=transport, message_type=_message_type_label(header),
                                ack_code=ack_code).inc()
    if duplicate:
        metrics.HL7_DUPLICATES.labels(transport=transport).inc()
    # Accepted messages (and resends of them) are routine — the demo pharmacy streams them all
    # day — so DEBUG keeps the stack to its few lines a minute; refusals stay INFO. The
    # metrics above count both.
    logger.log(logging.DEBUG if ack_code == "AA" else logging.INFO,
               "hl7 message answered %s%s", ack_code, " (duplicate)" if duplicate else "",
               extra={"transport": transport, "ack_code": ack_code, "error_code": error_code,
                       "reason": reason, **_loggable(header)})
    # The ACK declares no MSH-18, so it is UTF-8 by the hub's own rule (ASCII in practice:
    # the hub's texts are ASCII, and the MSH fields it echoes usually are).
    return ack.encode("utf-8", errors="replace")


def _record_refusal(*, db_session: Session, header: Header | None, refusal: Refusal,
                    transport: str, tenant_id: uuid.UUID | None,
                    caller: uuid.UUID | None = None) -> None:
    """Keep a refused message's receipt (sender, control id, code) for operators, best effort:
    a refusal is answered even when this fails. An already accepted message keeps its row.

    Only for senders a tenant's connection names: anyone can reach the MLLP port, and
    unknown senders must not be able to fill the table (they are logged and counted); over
    HTTP (``caller``, the client's tenant) only for the caller's own senders."""
    key = _receipt_key(header)
    if key is None:
        return
    try:
        if tenant_id is None:
            connection = sender_connection(db_session=db_session, application=key[0],
                                           facility=key[1])
            if connection is None or caller not in (None, connection.tenant_id):
                return
            tenant_id = connection.tenant_id
        existing = _receipt(db_session, key)
        if existing is None:
            db_session.add(Hl7Message(
                tenant_id=tenant_id, sender_application=key[0], sender_facility=key[1],
                control_id=key[2], message_type=header.message_type[:32], transport=transport,
                ack_code=refusal.ack_code, error_code=refusal.error_code))
        elif existing.ack_code != "AA":
            existing.ack_code, existing.error_code = refusal.ack_code, refusal.error_code
            existing.received_at, existing.transport = utcnow(), transport
            existing.tenant_id = tenant_id
        db_session.commit()
    except SQLAlchemyError:
        db_session.rollback()
        logger.warning("could not record a refused hl7 message", extra=_loggable(header))


def _receipt(db_session: Session, key: tuple[str, str, str]) -> Hl7Message | None:
    return db_session.scalar(select(Hl7Message).where(
        Hl7Message.sender_application == key[0], Hl7Message.sender_facility == key[1],
        Hl7Message.control_id == key[2]))


def _refused(*, db_session: Session, refusal: Refusal, transport: str,
             header: Header | None, tenant_id: uuid.UUID | None = None,
             caller: uuid.UUID | None = None) -> bytes:
    _record_refusal(db_session=db_session, header=header, refusal=refusal, transport=transport,
                    tenant_id=tenant_id, caller=caller)
    return _answer(transport=transport, header=header, ack_code=refusal.ack_code,
                   ack=refusal_acknowledgement(refusal), error_code=refusal.error_code,
                   reason=refusal.reason)


def _duplicate(*, db_session: Session, inbound: Inbound, transport: str,
               receipt: Hl7Message) -> bytes:
    try:
        db_session.execute(update(Hl7Message).where(Hl7Message.id == receipt.id)
                           .values(repeats=Hl7Message.repeats + 1))
        db_session.commit()
    except SQLAlchemyError:
        db_session.rollback()  # the count is for operators; the answer does not depend on it
    return _answer(transport=transport, header=inbound.header, ack_code="AA", duplicate=True,
                   ack=acknowledgement(ack_code="AA", source=inbound.message))


def receive_message(*, db_session: Session, settings: Settings, raw: bytes, transport: str,
                    tenant_id: uuid.UUID | None = None) -> bytes:
    """Take one HL7 v2 message (without MLLP framing) and return the ACK to send back.

    Read and check it, find its sender's tenant (its pharmacy connection's ``senders``; with
    ``tenant_id``, the calling client's tenant over HTTP, the sender must be that tenant's),
    check the tenant's entitlement, answer a control id already stored ``AA`` without
    processing it again, map it, minimize it by the PHI policy and store it with its receipt
    in one transaction. ``AA`` only after the commit; ``AR``/``AE`` with ERR otherwise,
    nothing stored but the receipt."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}")
    try:
        inbound = read_message(raw, structures=connector.STRUCTURES)
    except Refusal as refusal:
        return _refused(db_session=db_session, refusal=refusal, transport=transport,
                        header=refusal.header, caller=tenant_id)
    header = inbound.header

    def refuse(refusal: Refusal, tenant: uuid.UUID | None = None) -> bytes:
        refusal.source, refusal.header, refusal.control_id = \
            inbound.message, header, header.control_id
        return _refused(db_session=db_session, refusal=refusal, transport=transport,
                        header=header, tenant_id=tenant)

    connection = sender_connection(db_session=db_session, application=header.sender_application,
                                   facility=header.sender_facility)
    if connection is None:
        return refuse(Refusal("204", "The sending application and facility (MSH-3, MSH-4) "
                                     "belong to no tenant.", location="MSH^1^3"))
    if tenant_id is not None and connection.tenant_id != tenant_id:
        # Said as "unknown" on purpose: a client learns nothing of other tenants' senders.
        # Not recorded either: a client may not write receipts under another tenant.
        refusal = Refusal("204", "The sending application and facility (MSH-3, MSH-4) belong "
                                 "to no tenant.", location="MSH^1^3")
        refusal.source, refusal.header, refusal.control_id = \
            inbound.message, header, header.control_id
        return _answer(transport=transport, header=header, ack_code="AR",
                       ack=refusal_acknowledgement(refusal), error_code="204",
                       reason=refusal.reason)
    if not tenant_owns_product(db_session=db_session, tenant_id=str(connection.tenant_id),
                               product=PRODUCT, remembered=False):
        return refuse(Refusal("204", "The sender's tenant is not entitled to the pharmacy "
                                     "product.", location="MSH^1^3"), connection.tenant_id)

    key = _receipt_key(header)
    receipt = _receipt(db_session, key)
    if receipt is not None and receipt.ack_code == "AA":
        return _duplicate(db_session=db_session, inbound=inbound, transport=transport,
                          receipt=receipt)

    site = connector.Site(timezone=connection.timezone or "UTC",
                          unit_codes=(connection.options or {}).get("unit_codes") or {})
    try:
        resource, record, order_number = connector.canonical_record(inbound, site)
    except Refusal as refusal:
        return refuse(refusal, connection.tenant_id)
    minimized = minimize(resource, "store", record,
                         pseudonymizer=_pseudonymizer(settings, connection.tenant_id))
    occurred_at = record[TIME_FIELD_OF[resource]]
    try:
        _store(db_session=db_session, tenant_id=connection.tenant_id, inbound=inbound,
               transport=transport, receipt=receipt, resource=resource, minimized=minimized,
               order_number=order_number)
        # The event commits with the message or not at all (publish minimizes it itself).
        event = publish(db_session=db_session, settings=settings,
                        tenant_id=connection.tenant_id, event_type=EVENT_OF[resource],
                        product=PRODUCT, resource=record, occurred_at=occurred_at)
        db_session.commit()
    except IntegrityError:
        # The same control id committed by another connection or process just now.
        db_session.rollback()
        stored = _receipt(db_session, key)
        if stored is not None and stored.ack_code == "AA":
            return _duplicate(db_session=db_session, inbound=inbound, transport=transport,
                              receipt=stored)
        logger.warning("an hl7 message broke a constraint of its tables",
                       extra=_loggable(header))
        return refuse(Refusal("207", "The hub could not store the message; send it again.",
                              ack_code="AE"), connection.tenant_id)
    except _AlreadyAccepted:
        db_session.rollback()
        return _duplicate(db_session=db_session, inbound=inbound, transport=transport,
                          receipt=_receipt(db_session, key))
    except SQLAlchemyError as error:
        db_session.rollback()
        if outage_of(error) is not None:
            raise  # the database is down: the caller answers that (unavailable_acknowledgement)
        logger.exception("could not store an hl7 message", extra=_loggable(header))
        return _answer(transport=transport, header=header, ack_code="AE", error_code="207",
                       ack=refusal_acknowledgement(_internal_error(inbound)))
    finally:
        del record  # the PHI-bearing record goes no further than this function
    notify_published([event])
    return _answer(transport=transport, header=header, ack_code="AA",
                   ack=acknowledgement(ack_code="AA", source=inbound.message))


def unavailable_acknowledgement(*, raw: bytes, transport: str, outage: Outage) -> bytes:
    """The ACK of a message the hub could not take because a part it depends on is down
    (``outage``, see app.problems.OUTAGES): ``AR`` with ERR 207.

    HL7 table 0008 defines ``AR`` in original mode as a message the receiving application
    could not process for a reason unrelated to its content or format, which the sender may
    send again; ``AE`` would tell it the message itself was in error. Nothing was stored (its
    transaction rolled back) and no receipt is kept (the database may be what is down), so
    the resent message is processed as new. The ACK echoes the inbound MSH and control id
    when the message can be read (reading needs no database)."""
    refusal = Refusal("207", outage.detail, ack_code="AR")
    try:
        inbound = read_message(raw, structures=connector.STRUCTURES)
        refusal.source, refusal.header = inbound.message, inbound.header
        refusal.control_id = inbound.header.control_id
    except Refusal as unreadable:
        refusal.source, refusal.header = unreadable.source, unreadable.header
        refusal.control_id = unreadable.control_id
    return _answer(transport=transport, header=refusal.header, ack_code="AR", error_code="207",
                   reason=outage.problem_type, ack=refusal_acknowledgement(refusal))


def _internal_error(inbound: Inbound) -> Refusal:
    refusal = Refusal("207", "The hub could not store the message; send it again.",
                      ack_code="AE")
    refusal.source, refusal.header = inbound.message, inbound.header
    refusal.control_id = inbound.header.control_id
    return refusal


class _AlreadyAccepted(Exception):
    """Another process accepted this control id between our read and our write."""


# The canonical event each stored record is published as (docs/events.md), and its time.
EVENT_OF = {connector.ORDER: "order.placed", connector.DISPENSE: "dispense.recorded",
            connector.ADMINISTRATION: "administration.recorded"}
TIME_FIELD_OF = {connector.ORDER: "ordered_at", connector.DISPENSE: "dispensed_at",
                 connector.ADMINISTRATION: "administered_at"}

_RECORD_TABLES = {connector.ORDER: PharmacyOrder, connector.DISPENSE: PharmacyDispense,
                  connector.ADMINISTRATION: PharmacyAdministration}


def _columns(resource: str, minimized: dict, order_number: str) -> dict:
    """The table columns of a minimized canonical record (pseudonyms, no PHI)."""
    columns = {
        "order_number": order_number,
        "patient_pseudonym": minimized["patient"]["ref"],
        "unit": minimized["unit"],
        "ndc11": minimized["medication"]["ndc11"],
        "medication_name": minimized["medication"]["name"],
        "quantity": minimized["dose"]["quantity"],
        "dose_unit": minimized["dose"]["unit"],
        "route": minimized.get("route"),
    }
    if resource == connector.ORDER:
        columns["ordered_at"] = to_utc(minimized["ordered_at"])
    elif resource == connector.DISPENSE:
        columns.update(dispense_id=minimized["dispense_id"],
                       dispensed_at=to_utc(minimized["dispensed_at"]),
                       container_barcode=minimized.get("container_barcode"))
    else:
        columns.update(administration_id=minimized["administration_id"],
                       nurse_pseudonym=minimized.get("nurse_ref"),
                       administered_at=to_utc(minimized["administered_at"]),
                       container_barcode=minimized.get("container_barcode"))
    return columns


def _store(*, db_session: Session, tenant_id: uuid.UUID, inbound: Inbound, transport: str,
           receipt: Hl7Message | None, resource: str, minimized: dict,
           order_number: str) -> None:
    header = inbound.header
    if receipt is None:
        receipt = Hl7Message(tenant_id=tenant_id, sender_application=header.sender_application,
                             sender_facility=header.sender_facility,
                             control_id=header.control_id, message_type=header.message_type,
                             transport=transport, ack_code="AA")
        db_session.add(receipt)
        db_session.flush()  # the unique constraint speaks here, before any record is added
    else:
        # A control id refused before (AE/AR) and sent again: taken over only if no one else
        # accepted it meanwhile (the row lock makes a concurrent taker wait, then see AA).
        taken = db_session.execute(
            update(Hl7Message).where(Hl7Message.id == receipt.id, Hl7Message.ack_code != "AA")
            .values(ack_code="AA", error_code=None, tenant_id=tenant_id, transport=transport,
                    message_type=header.message_type, received_at=utcnow()))
        if taken.rowcount != 1:
            raise _AlreadyAccepted()
    row = _RECORD_TABLES[resource](tenant_id=tenant_id, message_id=receipt.id,
                                   **_columns(resource, minimized, order_number))
    db_session.add(row)
    db_session.flush()
