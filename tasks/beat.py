"""Beat's scheduler: celery-redbeat's, made to ride through a Redis or broker outage.

redbeat (2.4.2) keeps the schedule and a single-beat lock in Redis, but an outage ends beat:
its ``retry_period`` wraps only the client's direct calls, while every tick reads the schedule
through a pipeline and extends the lock through a script, neither of which is retried, so the
first ``ConnectionError`` leaves ``Service.start`` and beat exits (``CRITICAL celery.beat``).
Its lock is also taken once, blocking, at ``beat_init``: a lock that expired while Redis was
away is never taken again, and the next tick fails on it.

:class:`HubBeatScheduler` changes only that (a subclass, set as ``beat_scheduler``, rather than
a patch of redbeat: the outage handling sits at the one loop that owns it, and redbeat's
schedule format, entries and last-run times stay redbeat's):

* **The lock is checked on every tick.** The holder extends it; a beat without it tries to
  take it without blocking and otherwise stands by, looking again every
  ``STANDBY_POLL_SECONDS``. A beat whose lock expired during an outage takes it again only if
  no other beat took it meanwhile, so two beats never send at once. redbeat's own blocking
  ``beat_init`` acquire is skipped (the lock key is kept under another attribute), so a
  standby beat is not stuck inside a signal handler where an outage becomes a traceback.
* **An outage ends the tick, not beat.** A Redis or broker error (app.problems.OUTAGES
  decides what counts) logs one warning, beat sends nothing and tries again with exponential
  backoff up to the loop interval, and logs once when Redis answers again. Static entries are
  written again after an outage, in case Redis came back empty.
* **SIGTERM releases the lock** (Celery's beat calls ``close`` from its SIGTERM handler), so
  a standby takes over at its next look instead of after ``HUB_BEAT_LOCK_TIMEOUT``.
"""

from __future__ import annotations

import logging
import time

import redis.exceptions
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis

from app.problems import outage_of

# redbeat's logger, so an operator finds beat's lines under one name.
logger = logging.getLogger("celery.beat")

# How often a beat without the lock looks whether it is free: one SET NX per look.
STANDBY_POLL_SECONDS = 1.0
# First retry after an outage; it doubles up to the loop interval.
FIRST_RETRY_SECONDS = 1.0


class HubBeatScheduler(RedBeatScheduler):
    """redbeat's scheduler that keeps running through outages and re-checks its lock every
    tick (see the module docstring for why each part exists)."""

    def __init__(self, app, **kwargs):
        self._schedule_installed = False
        self._outage_since: float | None = None
        self._retry_in = FIRST_RETRY_SECONDS
        self._standing_by = False
        super().__init__(app, **kwargs)
        # redbeat's beat_init handler and tick act on ``lock_key``; this class handles the lock
        # itself, on every tick.
        self.single_beat_lock_key, self.lock_key = self.lock_key, None

    # --- schedule -------------------------------------------------------------------------

    def setup_schedule(self):
        """Write the static entries to Redis; with Redis down, at the first tick it answers."""
        try:
            super().setup_schedule()
        except Exception as error:
            if outage_of(error) is None:
                raise
            self._unavailable(error)
            return
        self._schedule_installed = True

    def tick(self, min=min, **kwargs):
        """Send what is due if this beat holds the lock; during an outage send nothing and
        return when to try again."""
        try:
            in_charge = self._in_charge()
            if in_charge and not self._schedule_installed:
                super().setup_schedule()
                self._schedule_installed = True
            interval = super().tick(min=min, **kwargs) if in_charge else None
        except Exception as error:
            if outage_of(error) is None:
                raise
            return self._unavailable(error)
        self._available()
        return interval if in_charge else min(STANDBY_POLL_SECONDS, self.max_interval)

    def maybe_due(self, entry, **kwargs):
        """redbeat's ``maybe_due``, except that an outage while sending ends the tick (one
        warning, see ``tick``) instead of a traceback per due entry."""
        is_due, next_time_to_run = entry.is_due()
        if is_due:
            logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
            try:
                self.apply_async(entry, **kwargs)
            except Exception as error:
                if outage_of(error) is not None:
                    raise
                logger.exception("Scheduler: Message Error: %s", error)
        return next_time_to_run

    # --- the single-beat lock ---------------------------------------------------------------

    def _in_charge(self) -> bool:
        if self.lock is not None:
            try:
                self.lock.extend(int(self.lock_timeout))
                return True
            except redis.exceptions.LockNotOwnedError:
                # It expired (an outage or a pause longer than the lock timeout): another beat
                # may hold it now. Take it again only if it is free.
                logger.warning("beat: its lock expired; taking it again unless another beat "
                               "holds it")
                self.lock = None
        lock = self._new_lock()
        if lock.acquire(blocking=False):
            self.lock = lock
            self._standing_by = False
            logger.info("beat: Acquired lock")
            return True
        if not self._standing_by:
            logger.info("beat: another beat holds the lock %s; standing by",
                        self.single_beat_lock_key)
            self._standing_by = True
        return False

    def _new_lock(self):
        client = get_redis(self.app)
        lock = client.lock(self.single_beat_lock_key, timeout=self.lock_timeout,
                           sleep=STANDBY_POLL_SECONDS)
        # redbeat's "extend to" script: every extension sets the lock's time to live to the
        # whole lock timeout rather than adding to what is left.
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        return lock

    def close(self):
        """Release the lock (a warm stop: a standby takes over at its next look), then close."""
        lock, self.lock = self.lock, None
        if lock is not None:
            try:
                lock.release()
                logger.info("beat: Released lock")
            except redis.exceptions.LockError:
                pass  # it had expired: nothing to release
            except Exception as error:
                if outage_of(error) is None:
                    raise
                logger.warning("beat: could not release its lock (Redis unavailable); it "
                               "expires within %s s", self.lock_timeout)
        super().close()

    @property
    def info(self):
        return (super().info + f"\n       . lock -> `{self.single_beat_lock_key}` "
                f"({self.lock_timeout}s)")

    # --- outages ------------------------------------------------------------------------------

    def _unavailable(self, error: BaseException) -> float:
        outage = outage_of(error)
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            # One line per outage, no traceback: the exception class says which part is down.
            logger.warning("beat: %s (%s); sending nothing until it answers, retrying with "
                           "backoff up to every %s s", outage.problem_type,
                           type(error).__name__, self.max_interval)
            # Redis may come back empty: write the static entries again when it answers.
            self._schedule_installed = False
        else:
            logger.debug("beat: still unavailable (%s)", type(error).__name__)
        return self._retry_interval()

    def _retry_interval(self) -> float:
        interval = min(self._retry_in, self.max_interval)
        self._retry_in = min(self._retry_in * 2, self.max_interval)
        return interval

    def _available(self) -> None:
        if self._outage_since is not None:
            logger.warning("beat: dependencies answer again after %.0f s; sending scheduled "
                           "tasks", time.monotonic() - self._outage_since)
            self._outage_since = None
        self._retry_in = FIRST_RETRY_SECONDS
