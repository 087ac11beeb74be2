"""The MLLP listener: System C's HL7 v2 messages over TCP, as a process of its own.

``python -m app.hl7.listener`` (the ``hl7`` line of the Procfile). Framing is the ``hl7``
library's (``hl7.mllp`` asyncio streams); each message is handed to
:func:`app.pharmacy.service.receive_message` on a worker thread, so a slow database write
for one connection never holds up the others, and the ACK goes back on the same connection.

What the listener does with input it cannot take (each counted in
``hub_mllp_connections_refused_total{reason}``):

* more than ``HUB_MLLP_MAX_CONNECTIONS`` open connections: the new one is closed at once
  (``too_many_connections``);
* nothing received for ``HUB_MLLP_IDLE_SECONDS`` (an idle or half-open peer, or a frame that
  never ends), or an ACK the peer does not read in that time: closed (``idle``);
* bytes outside an MLLP frame (no ``<VT>`` start) or a connection ending inside a frame:
  closed without an ACK, since the peer's framing cannot be trusted to read one
  (``framing``);
* a message longer than ``HUB_MLLP_MAX_MESSAGE_BYTES``: answered ``AR`` (ERR 207, from the
  hub's own MSH: the oversized message is not read) and closed (``oversize``).

Everything else, however broken, is a message and gets its ACK from the service; while a
dependency is down (the database), ``AR`` with ERR 207, and the listener keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from hl7.mllp import InvalidBlockError, start_hl7_server

from app.database import Database
from app.hl7.messages import Refusal, refusal_acknowledgement
from app.observability import metrics
from app.observability.logs import configure_logging
from app.pharmacy.service import receive_message, unavailable_acknowledgement
from app.problems import outage_of
from app.settings import Settings, load_settings

logger = logging.getLogger("app.hl7.listener")

TRANSPORT = "mllp"


def _broken_refusal(error_code: str, reason: str) -> bytes:
    return refusal_acknowledgement(Refusal(error_code, reason)).encode("ascii")


class MllpListener:
    """Serves MLLP connections: frames in, ACKs out, within the configured limits."""

    def __init__(self, *, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.open_connections = 0
        # One thread per connection the cap allows: a message never waits for a thread.
        self.executor = ThreadPoolExecutor(max_workers=settings.hub_mllp_max_connections,
                                           thread_name_prefix="hl7")

    def receive(self, raw: bytes) -> bytes:
        """Run the service for one message on a worker thread, with its own session."""
        session = self.database.new_session()
        try:
            return receive_message(db_session=session, settings=self.settings, raw=raw,
                                   transport=TRANSPORT)
        except Exception as error:  # noqa: BLE001 - a bug must cost one message, not the listener
            outage = outage_of(error)
            if outage is not None:
                # A dependency is down: AR, the sender resends; the listener keeps serving and
                # accepts again as soon as the dependency answers (each message opens its own
                # session, and the pool's pre-ping replaces dead connections).
                logger.warning("hl7 message refused: %s", outage.problem_type,
                               extra={"reason": outage.problem_type})
                return unavailable_acknowledgement(raw=raw, transport=TRANSPORT, outage=outage)
            logger.exception("hl7 message failed inside the hub")
            metrics.HL7_MESSAGES.labels(transport=TRANSPORT, message_type="unreadable",
                                        ack_code="AE").inc()
            return refusal_acknowledgement(Refusal(
                "207", "The hub could not process the message; send it again.",
                ack_code="AE")).encode("ascii")
        finally:
            session.close()

    def _refused(self, reason: str) -> None:
        metrics.MLLP_CONNECTIONS_REFUSED.labels(reason=reason).inc()
        logger.info("mllp connection closed: %s", reason, extra={"reason": reason})

    async def handle(self, reader, writer) -> None:
        """Serve one connection until the peer closes it or a limit closes it."""
        if self.open_connections >= self.settings.hub_mllp_max_connections:
            self._refused("too_many_connections")
            writer.close()
            return
        self.open_connections += 1
        metrics.MLLP_CONNECTIONS.inc()
        idle = self.settings.hub_mllp_idle_seconds
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    block = await asyncio.wait_for(reader.readblock(), timeout=idle)
                except TimeoutError:
                    self._refused("idle")
                    return
                except asyncio.IncompleteReadError as ended:
                    if ended.partial.strip():
                        self._refused("framing")
                    return
                except InvalidBlockError:
                    self._refused("framing")
                    return
                except ValueError:
                    # The library's limit: the rest of the frame would follow as garbage.
                    self._refused("oversize")
                    metrics.HL7_MESSAGES.labels(transport=TRANSPORT, message_type="unreadable",
                                                ack_code="AR").inc()
                    writer.writeblock(_broken_refusal(
                        "207", f"The message is longer than the {self.settings.hub_mllp_max_message_bytes} "
                               "bytes the hub accepts."))
                    await asyncio.wait_for(writer.drain(), timeout=idle)
                    return
                ack = await loop.run_in_executor(self.executor, self.receive, block)
                writer.writeblock(ack)
                try:
                    await asyncio.wait_for(writer.drain(), timeout=idle)
                except TimeoutError:
                    self._refused("idle")
                    return
        except (ConnectionError, OSError):
            return  # the peer went away; nothing to answer
        finally:
            self.open_connections -= 1
            metrics.MLLP_CONNECTIONS.dec()
            writer.close()


async def serve(settings: Settings) -> None:
    """Listen until SIGTERM or SIGINT, then stop accepting and let open messages finish."""
    database = Database(settings.database_url)
    listener = MllpListener(settings=settings, database=database)
    server = await start_hl7_server(listener.handle, settings.hub_mllp_host,
                                    settings.hub_mllp_port,
                                    limit=settings.hub_mllp_max_message_bytes)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopping.set)
    logger.info("mllp listener ready on %s:%s", settings.hub_mllp_host, settings.hub_mllp_port)
    async with server:
        await stopping.wait()
    listener.executor.shutdown(wait=True)
    database.engine.dispose()
    logger.info("mllp listener stopped")


def main() -> None:
    settings = load_settings()
    configure_logging(settings.hub_log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
