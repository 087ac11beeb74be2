"""Scheduled syncs under a real beat (redbeat on the session's Redis) and a real worker:
schedules fire, one beat is in charge, a restarted beat neither loses nor repeats a due run,
single flight, and a failing downstream that the next run recovers from.

Timings are short on purpose (intervals of 1–8 s, beat looking at its schedule every second,
see ``hub_environment``); every wait is on a condition with a timeout, and no assertion is
about speed: only about which runs happened and in what order.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.syncs import service
from app.syncs.models import SyncRun
from tests.fixtures.processes import wait_until

pytestmark = pytest.mark.usefixtures("demo_tenants", "demo_faults_cleared", "quiet_schedules")

TENANT = "north-general"


def only(hub, kind: str, spec: str, tenant: str = TENANT) -> str:
    """Enable one sync on ``spec`` (the others stay off); return its id."""
    sync_id = service.sync_id_for(db_session=hub.database.session, kind=kind, owner=tenant)
    service.update_sync(db_session=hub.database.session, settings=hub.settings,
                        schedule_id=sync_id, tenant_id=None, actor="test",
                        schedule=spec, enabled=True)
    return sync_id


def runs(hub, sync_id: str, outcomes=("running", "succeeded", "failed", "skipped")
         ) -> list[SyncRun]:
    session = hub.database.new_session()
    try:
        return list(session.scalars(select(SyncRun).where(
            SyncRun.schedule_id == uuid.UUID(sync_id),
            SyncRun.outcome.in_(outcomes)).order_by(SyncRun.started_at)))
    finally:
        session.close()


def finished(hub, sync_id: str) -> list[SyncRun]:
    return runs(hub, sync_id, ("succeeded", "failed", "skipped"))


def test_a_schedule_fires_on_its_interval_and_shows_its_last_run(hub, beats):
    sync_id = only(hub, "cache_warming", "1")
    beats.start()

    wait_until(lambda: len(runs(hub, sync_id, ("succeeded",))) >= 3, timeout=60,
               description="three cache-warming runs")

    # Two sends that a busy worker picks up at the same moment make one a counted skip (single
    # flight), never a failure.
    assert {run.outcome for run in finished(hub, sync_id)} <= {"succeeded", "skipped"}
    assert all(run.report["candidates"] >= 0 for run in runs(hub, sync_id, ("succeeded",)))
    view = service.get_sync(db_session=hub.database.session, settings=hub.settings,
                            schedule_id=sync_id, tenant_id=None)
    assert view["status"] == "ok" and view["last_run"]["outcome"] in {"succeeded", "running"}
    assert view["next_due_at"] is not None
    # Nothing else was enabled, so nothing else ran.
    other = service.sync_id_for(db_session=hub.database.session, kind="inventory_snapshot",
                                owner=TENANT)
    assert runs(hub, other) == []


def test_a_restarted_beat_neither_loses_nor_repeats_a_due_run(hub, beats):
    interval = 8
    sync_id = only(hub, "cache_warming", str(interval))
    # The entry is new: it runs at the first beat loop.
    first_beat = beats.start()
    wait_until(lambda: len(finished(hub, sync_id)) == 1, timeout=interval * 3,
               description="the first run")
    first_beat.stop()
    first_run = finished(hub, sync_id)[0]
    # Stay down past the next due time, so a run falls due while no beat is running.
    wait_until(lambda: time.time() > first_run.started_at.timestamp() + interval + 2,
               timeout=interval * 2, interval=0.2, description="the next run to fall due")
    restarted_at = time.time()
    beats.start()

    wait_until(lambda: len(finished(hub, sync_id)) >= 2, timeout=interval * 2,
               description="the overdue run after the restart")
    wait_until(lambda: len(finished(hub, sync_id)) >= 3, timeout=interval * 3,
               description="the next regular run")

    first, overdue, regular = finished(hub, sync_id)[:3]
    # Not lost: the overdue run went at once, not one interval after the restart…
    assert overdue.started_at.timestamp() - restarted_at < interval / 2
    # …and not repeated: the next run came a whole interval later.
    assert regular.started_at - overdue.started_at >= timedelta(seconds=interval - 1.5)


def test_a_second_beat_waits_and_takes_over_when_the_first_dies(hub, beats):
    sync_id = only(hub, "cache_warming", "2")
    first = beats.start()
    second = beats.start(wait_for_lock=False)
    wait_until(lambda: len(finished(hub, sync_id)) >= 4, timeout=60,
               description="four runs with two beats started")

    assert not second.holds_lock()
    starts = [run.started_at for run in finished(hub, sync_id)]
    # Two beats sending would put runs about a loop apart, or at the same moment.
    assert all(later - earlier >= timedelta(seconds=1.5)
               for earlier, later in zip(starts, starts[1:], strict=False))

    first.kill()
    wait_until(second.holds_lock, timeout=30, description="the second beat taking the lock")
    before = len(finished(hub, sync_id))
    wait_until(lambda: len(finished(hub, sync_id)) >= before + 2, timeout=30,
               description="runs sent by the second beat")


def test_single_flight_skips_and_counts_a_run_while_one_is_going(hub, demo_inventory):
    sync_id = only(hub, "inventory_snapshot", "3600")
    demo_inventory.admin.set_faults(latency_ms=400, site=TENANT)

    service.trigger_sync(db_session=hub.database.session, schedule_id=sync_id, tenant_id=None)
    wait_until(lambda: runs(hub, sync_id, ("running",)), timeout=30,
               description="the first run to start")
    service.trigger_sync(db_session=hub.database.session, schedule_id=sync_id, tenant_id=None)
    wait_until(lambda: runs(hub, sync_id, ("skipped",)), timeout=30,
               description="the overlapping run to be skipped")
    wait_until(lambda: runs(hub, sync_id, ("succeeded",)), timeout=120,
               description="the first run to finish")

    outcomes = [run.outcome for run in finished(hub, sync_id)]
    assert sorted(outcomes) == ["skipped", "succeeded"]
    view = service.get_sync(db_session=hub.database.session, settings=hub.settings,
                            schedule_id=sync_id, tenant_id=None)
    assert view["skipped_runs"] == 1 and view["status"] == "ok"


def test_a_failing_downstream_marks_the_sync_failed_and_the_next_run_recovers(
        hub, demo_inventory):
    sync_id = only(hub, "inventory_snapshot", "3600")
    demo_inventory.admin.set_faults(down=True, site=TENANT)

    service.trigger_sync(db_session=hub.database.session, schedule_id=sync_id, tenant_id=None)
    wait_until(lambda: runs(hub, sync_id, ("failed",)), timeout=60,
               description="the failed run")

    view = service.get_sync(db_session=hub.database.session, settings=hub.settings,
                            schedule_id=sync_id, tenant_id=None)
    assert view["status"] == "failing" and view["consecutive_failures"] == 1
    assert "unavailable" in view["last_run"]["error"]
    assert view["last_succeeded_at"] is None or view["last_succeeded_at"] < \
        view["last_run"]["started_at"]

    demo_inventory.admin.clear_faults()

    def recovered() -> bool:
        # The breaker opened by the failures lets a trial through after its reset time.
        if not runs(hub, sync_id, ("running",)):
            service.trigger_sync(db_session=hub.database.session,
                                 schedule_id=sync_id, tenant_id=None)
        return bool(runs(hub, sync_id, ("succeeded",)))

    wait_until(recovered, timeout=90, interval=1.0, description="a run that succeeds again")
    view = service.get_sync(db_session=hub.database.session, settings=hub.settings,
                            schedule_id=sync_id, tenant_id=None)
    assert view["status"] == "ok" and view["consecutive_failures"] == 0
    assert view["last_run"]["report"]["containers"] > 0


def test_a_schedule_changed_while_beat_runs_takes_effect_without_a_restart(hub, beats):
    sync_id = only(hub, "cache_warming", "3600")
    beat = beats.start()
    # A new interval sync runs once at once, then waits its hour.
    wait_until(lambda: len(finished(hub, sync_id)) == 1, timeout=30,
               description="the first run")

    service.update_sync(db_session=hub.database.session, settings=hub.settings,
                        schedule_id=sync_id, tenant_id=None, actor="test",
                        schedule="1")

    wait_until(lambda: len(runs(hub, sync_id, ("succeeded",))) >= 4, timeout=30,
               description="runs every second after the change")
    assert beat.process.poll() is None  # the same beat, never restarted
