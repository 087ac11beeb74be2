"""``python -m demo_systems send-pharmacy``: stream System C's messages to the hub over MLLP.

Original-mode HL7: one message, then wait for its ACK, then the next. The MLLP framing is the
``hl7`` library's (:func:`hl7.mllp.open_hl7_connection`). What the sender promises:

* a message counts as delivered once any ACK for it arrives (``AA``, ``AE`` or ``AR`` — a
  refusal would be refused again, so it is counted and logged, not resent);
* the position after the last acknowledged message is kept in ``<data-dir>/pharmacy-progress.json``,
  so a restarted sender resumes there and resends nothing that was acknowledged;
* when the listener is down or drops the connection, it reconnects with exponential backoff
  and resends the unacknowledged message (the hub recognises a repeated MSH-10);
* a message the listener accepts connections for but never acknowledges is given up after
  :data:`ATTEMPTS_PER_MESSAGE` tries, so one poisoned message cannot stall the stream.

Logs carry counts, control ids and ACK codes — never a patient identifier.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import hl7
from hl7.mllp import InvalidBlockError, open_hl7_connection

from demo_systems import manifest as manifest_file
from demo_systems.pharmacy import messages, store

PROGRESS_FILE = "pharmacy-progress.json"
ATTEMPTS_PER_MESSAGE = 3
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 30.0
SUMMARY_EVERY_SECONDS = 60.0
"""The stack keeps to a few log lines a minute: counts once a minute, each refusal at DEBUG."""

log = logging.getLogger("demo_systems.pharmacy.sender")


@dataclass
class Tally:
    """What the sender did, for the logs and the tests."""

    sent: int = 0
    acks: Counter = field(default_factory=Counter)
    """ACK codes received (``AA``, ``AE``, ``AR``; ``unreadable`` when the reply did not parse)."""
    given_up: int = 0
    connections: int = 0

    def line(self) -> str:
        """One log line of counts."""
        codes = " ".join(f"{code}={count}" for code, count in sorted(self.acks.items()))
        return (f"pharmacy stream: sent={self.sent} {codes or 'no ACKs yet'} "
                f"given_up={self.given_up} connections={self.connections}")


class Progress:
    """The resume position, kept in a small JSON file next to the pharmacy database.

    It belongs to one world (seed and order count): after re-seeding, the stream starts over.
    """

    def __init__(self, data_dir: Path, world: dict):
        self.path = Path(data_dir) / PROGRESS_FILE
        self.world = world

    def load(self) -> tuple[int, int]:
        """The position after the last acknowledged message; the start for a new world."""
        try:
            saved = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return (0, 0)
        if saved.get("world") != self.world:
            return (0, 0)
        return (int(saved["order"]), int(saved["sent"]))

    def save(self, position: tuple[int, int]) -> None:
        """Record ``position``; written aside and renamed so a crash never leaves half a file."""
        staging = self.path.with_suffix(".tmp")
        staging.write_text(json.dumps({"world": self.world, "order": position[0],
                                       "sent": position[1]}))
        os.replace(staging, self.path)


class _Link:
    """One MLLP connection to the listener, reopened with backoff whenever it breaks."""

    def __init__(self, host: str, port: int, tally: Tally):
        self.host, self.port, self.tally = host, port, tally
        self.reader = self.writer = None

    async def open(self) -> None:
        delay = FIRST_BACKOFF_SECONDS
        while self.writer is None:
            try:
                self.reader, self.writer = await open_hl7_connection(self.host, self.port)
                self.tally.connections += 1
                log.info("connected to the hub's MLLP listener at %s:%s (connection %d)",
                         self.host, self.port, self.tally.connections)
            except OSError as error:
                log.warning("listener at %s:%s unreachable (%s); retrying in %.1fs",
                            self.host, self.port, error.__class__.__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    async def exchange(self, payload: bytes, ack_timeout: float) -> bytes:
        """Send one framed message and return the ACK's bytes; raises when the link fails."""
        await self.open()
        self.writer.writeblock(payload)
        await self.writer.drain()
        return await asyncio.wait_for(self.reader.readblock(), ack_timeout)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


def _ack_code(reply: bytes, control_id: str) -> str:
    try:
        ack = hl7.parse(reply.decode("utf-8"))
        code, acknowledged = str(ack.segment("MSA")(1)), str(ack.segment("MSA")(2))
    except Exception:  # noqa: BLE001 - any unreadable reply is counted, never fatal
        return "unreadable"
    if acknowledged != control_id:
        log.warning("ACK for %s names %s", control_id, acknowledged)
    return code


async def send(*, data_dir: Path, host: str, port: int, rate: float = 0, ack_timeout: float = 10,
               limit: int | None = None, facilities: tuple[str, ...] | None = None) -> Tally:
    """Send every message from the saved position on; return what happened.

    ``rate`` is messages per second (0: as fast as ACKs come back); ``limit`` stops after that
    many acknowledged messages (the rest is sent by the next run).
    """
    data_dir = Path(data_dir)
    database_path = data_dir / store.FILE_NAME
    if not database_path.exists():
        raise FileNotFoundError(f"{database_path} does not exist; run `python -m demo_systems seed` first")
    database = store.open_read_only(database_path)
    orders = database.execute("SELECT count(*) FROM orders").fetchone()[0]
    progress = Progress(data_dir, {"seed": manifest_file.read(data_dir)["seed"], "orders": orders})
    tally = Tally()
    link = _Link(host, port, tally)
    interval = 1 / rate if rate > 0 else 0
    next_slot = time.monotonic()
    last_summary = time.monotonic()
    try:
        for position, message in messages.stream(database, after=progress.load(),
                                                 facilities=facilities):
            if limit is not None and tally.sent >= limit:
                break
            if interval:
                next_slot += interval
                await asyncio.sleep(max(0.0, next_slot - time.monotonic()))
            await _deliver(link, message, ack_timeout, tally)
            progress.save(position)
            if time.monotonic() - last_summary >= SUMMARY_EVERY_SECONDS:
                log.info(tally.line())
                last_summary = time.monotonic()
    finally:
        database.close()
        await link.close()
    log.info("%s (%s)", tally.line(), "stopped at the limit" if limit is not None
             and tally.sent >= limit else "everything sent")
    return tally


async def _deliver(link: _Link, message: messages.OutboundMessage, ack_timeout: float,
                   tally: Tally) -> None:
    for attempt in range(1, ATTEMPTS_PER_MESSAGE + 1):
        try:
            reply = await link.exchange(message.encoded(), ack_timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, InvalidBlockError, ValueError) as error:
            log.warning("no ACK for %s (%s, attempt %d of %d); reconnecting", message.control_id,
                        error.__class__.__name__, attempt, ATTEMPTS_PER_MESSAGE)
            await link.close()
            continue
        code = _ack_code(reply, message.control_id)
        tally.sent += 1
        tally.acks[code] += 1
        if code != "AA":
            log.debug("%s %s answered %s", message.kind, message.control_id, code)
        return
    tally.given_up += 1
    log.error("gave up on %s %s after %d attempts", message.kind, message.control_id,
              ATTEMPTS_PER_MESSAGE)


async def send_then_idle(**options) -> None:
    """Send everything, then stay up: in the stack a process that exits stops all the others."""
    await send(**options)
    log.info("pharmacy stream finished; idling until stopped")
    await asyncio.Event().wait()
