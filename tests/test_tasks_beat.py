"""Beat's scheduler (tasks/beat.py) under faults: a standby beat takes over after the holder's
SIGKILL (within the lock timeout) and at once after its SIGTERM; and a Redis outage under a
running beat, worker and MLLP listener, which all ride through it and work again afterwards.

Every process runs on a Redis of the test's own (tests/fixtures/redis_outage.py), stopped and
started again on the same port; the session's shared Redis is never touched. Takeover is
measured with the production defaults of HUB_BEAT_MAX_LOOP_INTERVAL / HUB_BEAT_LOCK_TIMEOUT
(the session's environment uses 1 / 4 s). Run with ``-s`` to see the measured figures.
"""

from __future__ import annotations

import os
import time

import pytest
import redis
from celery import Celery

from app.settings import SETTINGS
from tests.fixtures.hl7 import ack_segments, encoded, framed, hl7_message, read_frame, start_listener
from tests.fixtures.processes import stop_process_group, wait_until

# The production defaults, from the one place that declares them.
DEFAULTS = {setting.name: setting.default for setting in SETTINGS}
PRODUCTION_BEAT = {"HUB_BEAT_MAX_LOOP_INTERVAL": str(DEFAULTS["HUB_BEAT_MAX_LOOP_INTERVAL"]),
                   "HUB_BEAT_LOCK_TIMEOUT": str(DEFAULTS["HUB_BEAT_LOCK_TIMEOUT"])}
LOCK_TIMEOUT = DEFAULTS["HUB_BEAT_LOCK_TIMEOUT"]
LOOP_INTERVAL = DEFAULTS["HUB_BEAT_MAX_LOOP_INTERVAL"]
# The Redis outage of the long drill (what issue 12 saw kill beat); the quick one is shorter.
REDIS_OUTAGE_SECONDS = 30
QUICK_REDIS_OUTAGE_SECONDS = 4
# beat's single-beat lock (redbeat_key_prefix + redbeat's ":lock").
LOCK_KEY = "hub:beat::lock"

SENT = "Scheduler: Sending due task"
ACQUIRED = "beat: Acquired lock"
STANDING_BY = "standing by"
OUTAGE_WARNING = "sending nothing until it answers"


def sends(beat) -> int:
    return beat.log_text().count(SENT)


def in_charge(beat):
    def check() -> bool:
        assert beat.alive(), f"beat exited:\n{beat.log_text()[-3000:]}"
        return ACQUIRED in beat.log_text() and sends(beat) > 0
    return check


def standing_by(beat):
    def check() -> bool:
        assert beat.alive(), f"beat exited:\n{beat.log_text()[-3000:]}"
        return STANDING_BY in beat.log_text()
    return check


def takeover_seconds(drill_processes, stop) -> tuple[float, float]:
    """Start a holder and a standby with the production settings, stop the holder with
    ``stop``; return seconds until the standby holds the lock and until it sends a task."""
    holder = drill_processes.beat(**PRODUCTION_BEAT)
    wait_until(in_charge(holder), timeout=60, interval=0.1, description="the first beat")
    standby = drill_processes.beat(**PRODUCTION_BEAT)
    wait_until(standing_by(standby), timeout=60, interval=0.1, description="the standby")
    assert ACQUIRED not in standby.log_text() and sends(standby) == 0

    stopped_at = time.monotonic()
    stop(holder)
    wait_until(lambda: ACQUIRED in standby.log_text(), timeout=LOCK_TIMEOUT + 15,
               interval=0.05, description="the standby taking the lock")
    acquired = time.monotonic() - stopped_at
    wait_until(lambda: sends(standby) > 0, timeout=LOOP_INTERVAL + 10, interval=0.05,
               description="the standby sending a scheduled task")
    return acquired, time.monotonic() - stopped_at


@pytest.mark.faults
def test_a_standby_beat_takes_over_at_once_when_the_holder_stops_warmly(drill_processes):
    acquired, first_send = takeover_seconds(drill_processes, lambda beat: beat.terminate())

    print(f"\nbeat takeover after SIGTERM: lock {acquired:.1f} s, first task sent "
          f"{first_send:.1f} s")
    holder = drill_processes.started[0]
    assert "beat: Released lock" in holder.log_text()
    # Released, not expired: well before the lock timeout.
    assert acquired < LOCK_TIMEOUT / 2


@pytest.mark.faults
@pytest.mark.slow_fault
def test_a_standby_beat_takes_over_within_the_lock_timeout_after_a_sigkill(drill_processes):
    acquired, first_send = takeover_seconds(drill_processes, lambda beat: beat.kill())

    print(f"\nbeat takeover after SIGKILL: lock {acquired:.1f} s, first task sent "
          f"{first_send:.1f} s (lock timeout {LOCK_TIMEOUT} s, loop {LOOP_INTERVAL} s)")
    # The lock was last extended at most one loop before the kill; the standby looks every
    # second: it takes over between (timeout − loop) and (timeout + a look) after the kill.
    assert LOCK_TIMEOUT - LOOP_INTERVAL - 1 <= acquired <= LOCK_TIMEOUT + 2
    assert first_send <= 30


@pytest.mark.faults
def test_a_beat_whose_lock_another_beat_took_stands_by_and_takes_it_again_when_free(
        drill_processes, restartable_redis):
    # The session's 1 s loop and 4 s lock: the beat looks at its lock every second.
    beat = drill_processes.beat()
    wait_until(in_charge(beat), timeout=60, interval=0.1, description="beat")
    client = redis.Redis.from_url(restartable_redis.url)

    # What another beat does when this one's lock expired (a Redis outage or a pause longer
    # than the lock timeout): its own token on the key.
    client.set(LOCK_KEY, "another-beat", px=60_000)
    wait_until(lambda: STANDING_BY in beat.log_text(), timeout=15, interval=0.05,
               description="the beat standing by")
    sent = sends(beat)
    # Watch three of its loops (the audit writer falls due every 5 s; a beat still sending
    # would send it here or in the next loops) — an absence needs a window.
    time.sleep(3)
    assert sends(beat) == sent
    assert client.get(LOCK_KEY) == b"another-beat"

    client.delete(LOCK_KEY)  # the other beat stopped
    wait_until(lambda: beat.log_text().count(ACQUIRED) == 2 and sends(beat) > sent,
               timeout=15, interval=0.05, description="the beat taking the lock again")
    assert beat.alive()


def pharmacy_ack(listener, sender, control_id: str) -> list:
    with listener.connect(timeout=30) as connection:
        connection.sendall(framed(encoded(hl7_message(sender=sender, control_id=control_id))))
        return ack_segments(read_frame(connection))["MSA"][1:3]


@pytest.mark.faults
@pytest.mark.parametrize("outage_seconds", [
    QUICK_REDIS_OUTAGE_SECONDS,
    pytest.param(REDIS_OUTAGE_SECONDS, marks=pytest.mark.slow_fault),
])
def test_beat_worker_and_listener_ride_through_a_redis_outage(
        drill_processes, restartable_redis, hub_environment, pharmacy_tenant, tmp_path,
        monkeypatch, outage_seconds):
    beat = drill_processes.beat(**PRODUCTION_BEAT)
    wait_until(in_charge(beat), timeout=60, interval=0.1, description="beat")
    standby = drill_processes.beat(**PRODUCTION_BEAT)
    worker = drill_processes.worker()
    wait_until(lambda: "ready." in worker.log_text(), timeout=60, interval=0.2,
               description="the worker")
    wait_until(standing_by(standby), timeout=60, interval=0.1, description="the standby")
    listener = start_listener({**hub_environment, **{
        name: drill_processes.environment[name]
        for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}}, tmp_path)
    # Celery lets CELERY_BROKER_URL / CELERY_RESULT_BACKEND (the session's) win over its
    # configuration: point them at this test's Redis while the client is used.
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.setenv(name, restartable_redis.url)
    client = Celery("drill")
    client.config_from_object("celeryconfig")
    try:
        assert pharmacy_ack(listener, pharmacy_tenant.sender, "BEFORE-1") == ["AA", "BEFORE-1"]
        pids = {process.process.pid for process in (beat, standby, worker)}

        with restartable_redis.down(outage_seconds):
            # The database is up: the listener still stores and acknowledges (the event's
            # fan-out waits for the broker, left to the sweeper).
            assert pharmacy_ack(listener, pharmacy_tenant.sender, "DURING-1") == \
                ["AA", "DURING-1"]
        back_at = time.monotonic()
        sent_before = {id(process): sends(process) for process in (beat, standby)}

        wait_until(lambda: sends(beat) > sent_before[id(beat)] or
                   sends(standby) > sent_before[id(standby)],
                   timeout=LOOP_INTERVAL + 20, interval=0.05,
                   description="a scheduled task sent after Redis returned")
        first_send = time.monotonic() - back_at
        echoed = client.send_task("hub.io.smoke_echo", args=[7]).get(timeout=60)
        submitted = time.monotonic() - back_at
        assert echoed["value"] == 7
        assert pharmacy_ack(listener, pharmacy_tenant.sender, "AFTER-1") == ["AA", "AFTER-1"]
        print(f"\nRedis down {outage_seconds} s: first scheduled task sent {first_send:.1f} s "
              f"after it returned; a task submitted then done after {submitted:.1f} s")

        # The same processes, never restarted.
        assert all(process.alive() for process in (beat, standby, worker))
        assert listener.process.poll() is None
        assert {process.process.pid for process in (beat, standby, worker)} == pids
        # One warning for the outage, no traceback per tick, and never two beats sending.
        wait_until(lambda: sum(sends(p) > sent_before[id(p)] for p in (beat, standby)) == 1,
                   timeout=10, description="sends after recovery")
        if outage_seconds > LOCK_TIMEOUT:
            # The lock expired during the outage and both beats went for it: watch one more
            # loop (5 s entries fall due in it); a second beat sending would show here.
            time.sleep(LOOP_INTERVAL + 1)
            assert sum(sends(p) > sent_before[id(p)] for p in (beat, standby)) == 1
            assert sum(text.count("its lock expired") for text in
                       (beat.log_text(), standby.log_text())) == 1
        for process in (beat, standby):
            text = process.log_text()
            assert text.count(OUTAGE_WARNING) == 1, text[-3000:]
            assert "CRITICAL" not in text and "Traceback" not in text
    finally:
        stop_process_group(listener.process)
        if os.environ.get("HUB_DRILL_KEEP_LOGS"):
            print(beat.log_text()[-5000:])
