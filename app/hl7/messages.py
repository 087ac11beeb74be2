"""Reading an inbound HL7 v2 message and answering it with an original-mode acknowledgement.

What the hub accepts (docs/hl7.md says the same for operators):

* the message starts with an MSH segment whose field separator is ``|`` and encoding
  characters exactly ``^~\\&``;
* segments end with CR; LF and CRLF are accepted as well (many interface engines and files
  use them), and empty lines between segments are ignored. An unescaped LF cannot occur inside
  an HL7 field, so reading it as a segment end loses nothing;
* the character set is MSH-18: empty or ``UNICODE UTF-8`` read as UTF-8 (of which the HL7
  default, ASCII, is a subset), ``ASCII`` and ``8859/1`` as named; any other value is refused
  (``AR``, 103) and bytes that are not valid in the declared set are refused (``AR``, 102);
* HL7 version (MSH-12) 2.5 or a 2.5.x revision (2.5.1); others are refused (``AR``, 203);
* processing id (MSH-11) ``P``, ``T`` or ``D``; the control id (MSH-10) and the sending
  application and facility (MSH-3, MSH-4) are present;
* the message type (MSH-9) is one the caller supports, with its required segments in order.

A refusal is a :class:`Refusal`: an HL7 table 0357 error code, a fixed reason text (never a
value of the message, which may be patient data) and where in the message it was found.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import hl7

FIELD_SEPARATOR = "|"
ENCODING_CHARACTERS = "^~\\&"
SUPPORTED_VERSION = re.compile(r"^2\.5(\.\d{1,2})?$", re.ASCII)
PROCESSING_IDS = frozenset({"P", "T", "D"})
CHARACTER_SETS = {"": "utf-8", "UNICODE UTF-8": "utf-8", "ASCII": "ascii", "8859/1": "latin-1"}
"""MSH-18 (HL7 table 0211) values the hub reads, and the Python codec of each."""

HUB_APPLICATION = "MEDHUB"
"""The hub's own MSH-3/MSH-4 in an acknowledgement it cannot build from the inbound MSH."""
FALLBACK_VERSION = "2.5"
MAX_CONTROL_ID = 64
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$", re.ASCII)
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$", re.ASCII)
_TIMESTAMP = re.compile(r"^\d{12}(\d{2}(\.\d{1,4})?)?([+-]\d{4})?$", re.ASCII)

ERROR_CODES = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "207": "Application internal error",
}
"""HL7 table 0357 (message error condition codes) the hub answers with."""


class Refusal(Exception):
    """Why a message is not accepted: ack code (``AR``/``AE``), table 0357 code, a reason.

    ``reason`` is a fixed sentence written by the hub (it goes back in ERR-8 and into the
    logs), never text taken from the message. ``location`` is an ERR-2 location
    (``PID^1^3``: segment, sequence, field) or empty.
    """

    def __init__(self, error_code: str, reason: str, *, ack_code: str = "AR",
                 location: str = "") -> None:
        if error_code not in ERROR_CODES:
            raise ValueError(f"not a table 0357 code the hub uses: {error_code}")
        super().__init__(f"{error_code} {reason}")
        self.error_code = error_code
        self.reason = reason
        self.ack_code = ack_code
        self.location = location
        # Set by read_message: what of the MSH could be read, for the acknowledgement.
        self.source: hl7.Message | None = None
        self.header: Header | None = None
        self.control_id = ""


@dataclass(frozen=True)
class Structure:
    """An HL7 v2.5 abstract message structure: its id and the segments it requires, in the
    order they must first appear."""

    structure_id: str
    required_segments: tuple[str, ...]


@dataclass(frozen=True)
class Header:
    """What the hub reads of an inbound MSH."""

    sender_application: str
    sender_facility: str
    control_id: str
    message_code: str
    trigger: str
    structure: str
    version: str
    processing_id: str
    sent_at: str

    @property
    def message_type(self) -> str:
        """``RDE^O11`` (code and trigger; the structure id is left out)."""
        return f"{self.message_code}^{self.trigger}" if self.trigger else self.message_code


@dataclass(frozen=True)
class Inbound:
    """A message that passed every check of this module."""

    message: hl7.Message
    header: Header
    structure: Structure


def _segment_lines(text: str) -> list[str]:
    # CR, LF or CRLF end a segment; blank lines (and a trailing separator) are no segments.
    return [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]


def field(message: hl7.Message, segment: str, field_number: int, component: int = 1, *,
          repetition: int = 1, sequence: int = 1) -> str:
    """Return one component of a field of the ``sequence``-th ``segment`` (unescaped), or ""
    when the segment, field or component is absent."""
    try:
        value = message.extract_field(segment, sequence, field_number, repetition, component)
    except (KeyError, IndexError):
        return ""
    return str(value).strip()


def _header_of(msh_message: hl7.Message) -> Header:
    def msh(number: int, component: int = 1) -> str:
        return field(msh_message, "MSH", number, component)

    return Header(sender_application=msh(3), sender_facility=msh(4), control_id=msh(10),
                  message_code=msh(9, 1).upper(), trigger=msh(9, 2).upper(),
                  structure=msh(9, 3).upper(), version=msh(12), processing_id=msh(11).upper(),
                  sent_at=msh(7))


def _safe_control_id(control_id: str) -> str:
    # Echoed only when it looks like a control id: a broken MSH may hold anything there.
    if control_id and len(control_id) <= MAX_CONTROL_ID and _PRINTABLE.match(control_id) \
            and not set(control_id) & set(FIELD_SEPARATOR + ENCODING_CHARACTERS):
        return control_id
    return ""


def _refuse(refusal: Refusal, *, source: hl7.Message | None, header: Header | None,
            control_id: str = "") -> Refusal:
    refusal.source = source
    refusal.header = header
    refusal.control_id = _safe_control_id(header.control_id if header else control_id)
    return refusal


def read_message(raw: bytes, *, structures: Mapping[tuple[str, str], Structure]) -> Inbound:
    """Decode, parse and check ``raw`` (one message, without MLLP framing).

    ``structures`` are the (message code, trigger) pairs the caller handles. Raises
    :class:`Refusal` (with what of the MSH could be read, for the acknowledgement)."""
    # latin-1 maps every byte to a character, so the MSH can be read before the character
    # set it declares is known.
    lines = _segment_lines(raw.decode("latin-1"))
    if not lines or not lines[0].startswith("MSH"):
        raise _refuse(Refusal("100", "The message does not begin with an MSH segment.",
                              location="MSH^1"), source=None, header=None)
    try:
        msh_message = hl7.parse(lines[0])
        msh_segment = msh_message.segment("MSH")
        separators = (str(msh_segment(1)), str(msh_segment(2)))
        header = _header_of(msh_message)
    except Exception:  # noqa: BLE001 - the library raises many kinds for a broken MSH
        raise _refuse(Refusal("100", "The MSH segment cannot be read.", location="MSH^1"),
                      source=None, header=None) from None
    if separators != (FIELD_SEPARATOR, ENCODING_CHARACTERS):
        raise _refuse(Refusal("102", "The field separator (MSH-1) and encoding characters "
                                     "(MSH-2) must be the standard ones.", location="MSH^1^2"),
                      source=None, header=None, control_id=header.control_id)
    text = _decode(raw, msh_message, header)
    try:
        message = hl7.parse("\r".join(_segment_lines(text)))
    except Exception:  # noqa: BLE001
        raise _refuse(Refusal("100", "The message cannot be parsed."), source=msh_message,
                      header=header) from None
    for number, segment in enumerate(message, start=1):
        if not _SEGMENT_ID.match(str(segment[0])):
            raise _refuse(Refusal("100", f"Segment {number} has no valid segment id (a truncated "
                                         "or broken segment).", location=f"^{number}"),
                          source=msh_message, header=header)
    structure = _check_header(header, structures, msh_message)
    _check_segments(message, structure, msh_message, header)
    return Inbound(message=message, header=header, structure=structure)


def _decode(raw: bytes, msh_message: hl7.Message, header: Header) -> str:
    declared = field(msh_message, "MSH", 18).upper()
    codec = CHARACTER_SETS.get(declared)
    if codec is None:
        raise _refuse(Refusal("103", "The character set (MSH-18) is not one the hub reads: "
                                     "UNICODE UTF-8, ASCII or 8859/1.", location="MSH^1^18"),
                      source=msh_message, header=header)
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        raise _refuse(Refusal("102", "The message has bytes that are not valid in its character "
                                     "set (MSH-18; UTF-8 when empty).", location="MSH^1^18"),
                      source=msh_message, header=header) from None


def _check_header(header: Header, structures: Mapping[tuple[str, str], Structure],
                  msh_message: hl7.Message) -> Structure:
    def refuse(code: str, reason: str, number: int) -> Refusal:
        return _refuse(Refusal(code, reason, location=f"MSH^1^{number}"), source=msh_message,
                       header=header)

    if not header.control_id:
        raise refuse("101", "The message control id (MSH-10) is missing.", 10)
    if not _safe_control_id(header.control_id):
        raise refuse("102", f"The message control id (MSH-10) must be 1 to {MAX_CONTROL_ID} "
                            "printable ASCII characters without separators.", 10)
    if not header.message_code:
        raise refuse("101", "The message type (MSH-9) is missing.", 9)
    if header.message_code not in {code for code, _trigger in structures}:
        raise refuse("200", "The hub does not accept this message type.", 9)
    structure = structures.get((header.message_code, header.trigger))
    if structure is None:
        raise refuse("201", "The hub does not accept this trigger event of the message type.", 9)
    if header.structure and header.structure != structure.structure_id:
        raise refuse("200", "The message structure (MSH-9.3) does not match the message type.",
                     9)
    if not header.version:
        raise refuse("101", "The version id (MSH-12) is missing.", 12)
    if not SUPPORTED_VERSION.match(header.version):
        raise refuse("203", "The hub accepts HL7 version 2.5 (and 2.5.x) only.", 12)
    if not header.processing_id:
        raise refuse("101", "The processing id (MSH-11) is missing.", 11)
    if header.processing_id not in PROCESSING_IDS:
        raise refuse("202", "The processing id (MSH-11) must be P, T or D.", 11)
    if not header.sender_application:
        raise refuse("101", "The sending application (MSH-3) is missing.", 3)
    if not header.sender_facility:
        raise refuse("101", "The sending facility (MSH-4) is missing.", 4)
    return structure


def _check_segments(message: hl7.Message, structure: Structure, msh_message: hl7.Message,
                    header: Header) -> None:
    ids = [str(segment[0]) for segment in message]
    if ids.count("MSH") != 1:
        raise _refuse(Refusal("100", "A message has exactly one MSH segment.", location="MSH"),
                      source=msh_message, header=header)
    position = -1
    for segment_id in structure.required_segments:
        if segment_id not in ids:
            raise _refuse(Refusal("100", f"The required segment {segment_id} is missing.",
                                  location=segment_id), source=msh_message, header=header)
        # Each required segment must occur after the one before it (a repeated one, such as
        # RDS's second RXR, counts where it follows).
        following = [index for index, found in enumerate(ids) if found == segment_id
                     and index > position]
        if not following:
            raise _refuse(Refusal("100", f"The segment {segment_id} is out of order.",
                                  location=f"{segment_id}^1"), source=msh_message,
                          header=header)
        position = following[0]


def parse_timestamp(value: str) -> datetime:
    """Return an HL7 TS/DTM to the minute or finer (``YYYYMMDDHHMM[SS[.S…]][+ZZZZ]``) as a
    datetime: aware when the value has an offset, naive (site time) when not."""
    if not _TIMESTAMP.match(value):
        raise ValueError("not an HL7 timestamp to the minute (YYYYMMDDHHMM[SS][+ZZZZ])")
    return hl7.parse_datetime(value)


def new_control_id() -> str:
    """Return a control id for a message the hub sends (20 characters, HL7's ST length)."""
    return uuid.uuid4().hex[:20].upper()


def _err_segment(ack: hl7.Message, refusal: Refusal) -> hl7.Segment:
    err = ack.create_segment([ack.create_field(["ERR"])])
    if refusal.location:
        # ERR-2 is a composite: each component is assigned, so ^ stays a separator.
        for number, part in enumerate(refusal.location.split("^"), start=1):
            err.assign_field(part, 2, 1, number)
    err.assign_field(refusal.error_code, 3, 1, 1)
    err.assign_field(ERROR_CODES[refusal.error_code], 3, 1, 2)
    err.assign_field("HL70357", 3, 1, 3)
    err.assign_field("E", 4)
    err.assign_field(ack.escape(refusal.reason), 8)
    return err


def acknowledgement(*, ack_code: str, source: hl7.Message | None, control_id: str = "",
                    refusal: Refusal | None = None) -> str:
    """Return the original-mode ACK (text, segments ended by CR) for a message.

    With ``source`` (the inbound message, or its MSH alone) the ACK's MSH is built from it by
    the library: MSH-3/4 and MSH-5/6 swapped, a new MSH-10, MSH-9 ``ACK^<trigger>^ACK``, the
    same MSH-11 and MSH-12; MSA-2 echoes the inbound MSH-10. Without it (an MSH too broken to
    build from) the ACK comes from ``MEDHUB``/``MEDHUB`` to nobody, MSH-9 ``ACK``, processing
    id ``P``, version 2.5, and MSA-2 is ``control_id`` when one could be read, else empty.
    A refusal adds ERR (location, 0357 code and text, severity ``E``, the hub's reason)."""
    ack = None
    if source is not None:
        try:
            ack = source.create_ack(ack_code, message_id=new_control_id())
        except Exception:  # noqa: BLE001 - an MSH-9 without components breaks the library's copy
            control_id = _safe_control_id(field(source, "MSH", 10))
    if ack is None:
        now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        ack = hl7.parse(f"MSH|^~\\&|{HUB_APPLICATION}|{HUB_APPLICATION}|||{now}||ACK|"
                        f"{new_control_id()}|P|{FALLBACK_VERSION}\rMSA|{ack_code}|")
        if control_id:
            ack.segment("MSA").assign_field(control_id, 2)
    if refusal is not None:
        ack.append(_err_segment(ack, refusal))
    return str(ack) + "\r"


def refusal_acknowledgement(refusal: Refusal, *, ack_code: str | None = None) -> str:
    """Return the ACK answering a refused message (``refusal.ack_code`` unless overridden)."""
    return acknowledgement(ack_code=ack_code or refusal.ack_code, source=refusal.source,
                           control_id=refusal.control_id, refusal=refusal)
