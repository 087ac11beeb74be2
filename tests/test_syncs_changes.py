"""Change detection on Systems A and B with a stored watermark, against the live world's demo
systems (records added through their change feeds), the real worker and beat.

What is proved: the first run starts at "now"; new records are read exactly once, on the next
run; a run with no change reads nothing; a run that fails between batches (the publish of a
batch fails, or the system goes down mid-run) resumes from the last committed watermark with
neither duplicates nor gaps; a system that is down fails the run visibly and keeps the
watermark; a large backlog is paged in batches and a run stops at its time budget; reports
are PHI-free; a tenant without the product has no change sync.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.connectors.resilience import DownstreamUnavailable
from app.events import service as events
from app.events.models import Event
from app.problems import Problem
from app.syncs import service
from app.syncs.changes import FEEDS, read_changes
from app.syncs.models import ChangeWatermark, SyncRun
from app.tenants.service import get_tenant_by_slug
from tests.fixtures.changes import published_records, run_change_sync, stored_watermark
from tests.fixtures.cli import hub_cli
from tests.fixtures.phi import leaks_in
from tests.fixtures.processes import wait_until

pytestmark = pytest.mark.usefixtures("celery_worker", "quiet_schedules", "live_connections")

TENANT = "north-general"
# sync kind, its feed, the live demo system's fixture
KINDS = [("administration_changes", "administrations", "live_administration"),
         ("movement_changes", "movements", "live_inventory")]
EVENT_TYPE = {"administrations": "administration.recorded", "movements": "container.moved"}


@pytest.fixture(params=KINDS, ids=[kind for kind, _feed, _system in KINDS])
def change_sync(request):
    kind, feed, system = request.param
    return kind, feed, request.getfixturevalue(system)


def exactly_once(published: list[str], expected: list[str]) -> bool:
    return len(published) == len(set(published)) and sorted(published) == sorted(expected)


def tenant_row(hub, slug: str = TENANT):
    return get_tenant_by_slug(db_session=hub.database.session, slug=slug)


def head(server, site: str = TENANT) -> int:
    if server.system == "administration":
        return server.get(site, "/administrations/changes", page_size=0).json()["head_sequence"]
    return server.get(site, "/movements/changes", limit=0).json()["headSequence"]


class Collector:
    """The hub's publisher (or, with ``store=False``, none: the ids only), keeping the ids of
    what each committed batch published, and able to fail at a chosen batch."""

    def __init__(self, feed: str, *, fail_in_batch: int | None = None, on_batch=None,
                 store: bool = True):
        self.store = store
        self.record_id = (lambda record: record["administration_id"]) \
            if feed == "administrations" else (lambda record: record["movement"]["movement_id"])
        self.published: list[str] = []
        self.pending: list[str] = []
        self.batch = 0
        self.fail_in_batch = fail_in_batch
        self.on_batch = on_batch

    def __call__(self, *, db_session, settings, tenant_id, event_type, product, resource,
                 occurred_at):
        if not self.pending:
            self.batch += 1
            if self.on_batch:
                self.on_batch(self.batch)
            if self.batch == self.fail_in_batch:
                raise RuntimeError("the event store refused batch")
        self.pending.append(self.record_id(resource))
        if not self.store:
            return self.record_id(resource)
        return events.publish(db_session=db_session, settings=settings, tenant_id=tenant_id,
                              event_type=event_type, product=product, resource=resource,
                              occurred_at=occurred_at)

    def committed(self, _events: list) -> None:
        self.published += self.pending
        self.pending = []


def read_in_process(hub, feed: str, collector: Collector, **overrides) -> dict:
    """One run of a feed in this process, with its own batch size and time budget."""
    try:
        return read_changes(db_session=hub.database.session,
                            settings=replace(hub.settings, **overrides), tenant=tenant_row(hub),
                            feed=FEEDS[feed], publish=collector, after_commit=collector.committed)
    finally:
        collector.pending = []


# --- first run, new records, no change ---------------------------------------------------------

def test_the_first_run_starts_at_now_and_reads_nothing_older(hub, change_sync):
    kind, feed, system = change_sync
    system.admin.add_live_records(TENANT, 5)  # recorded before the hub watched: history

    first = run_change_sync(hub, kind, TENANT)

    assert first.outcome == "succeeded", first.error
    assert first.report["feed_started"] is True
    assert first.report["records_read"] == first.report["events_published"] == 0
    assert published_records(hub, EVENT_TYPE[feed]) == []
    assert stored_watermark(hub, tenant_row(hub).id, feed) == str(head(system))
    second = run_change_sync(hub, kind, TENANT)
    assert second.report["records_read"] == 0 and second.report["feed_started"] is False


def test_new_records_are_read_exactly_once_on_the_next_run(hub, change_sync):
    kind, feed, system = change_sync
    run_change_sync(hub, kind, TENANT)
    added = system.admin.add_live_records(TENANT, 7)

    run = run_change_sync(hub, kind, TENANT)

    assert run.outcome == "succeeded", run.error
    assert run.report["records_read"] == run.report["events_published"] == 7
    assert run.report["records_skipped"] == 0 and run.report["batches"] == 1
    assert exactly_once(published_records(hub, EVENT_TYPE[feed]), added["ids"])
    assert stored_watermark(hub, tenant_row(hub).id, feed) == str(added["head_sequence"])
    # Nothing new: nothing read, nothing published.
    again = run_change_sync(hub, kind, TENANT)
    assert again.report["records_read"] == again.report["events_published"] == 0
    assert len(published_records(hub, EVENT_TYPE[feed])) == 7


def test_the_records_read_are_exactly_the_new_ones(hub, change_sync):
    kind, feed, system = change_sync
    run_change_sync(hub, kind, TENANT)
    added = system.admin.add_live_records(TENANT, 9)
    collector = Collector(feed)

    report = read_in_process(hub, feed, collector)

    assert collector.published == added["ids"]  # in the feed's order
    assert report["events_published"] == 9
    assert read_in_process(hub, feed, Collector(feed))["records_read"] == 0


def test_scheduled_runs_under_beat_read_new_records_once(hub, beats, live_administration):
    schedule_id = service.sync_id_for(db_session=hub.database.session,
                                      kind="administration_changes", owner=TENANT)
    service.update_sync(db_session=hub.database.session, settings=hub.settings,
                        schedule_id=schedule_id, tenant_id=None, actor="test", schedule="1",
                        enabled=True)
    beats.start()

    def runs() -> list[SyncRun]:
        with hub.database.new_session() as reader:
            return list(reader.scalars(select(SyncRun).where(
                SyncRun.schedule_id == uuid.UUID(schedule_id), SyncRun.outcome == "succeeded")
                .order_by(SyncRun.started_at)))

    wait_until(lambda: runs() and runs()[0].report["feed_started"], timeout=60,
               description="the first scheduled run starting the feed")
    live_administration.admin.add_live_records(TENANT, 4)
    wait_until(lambda: sum(run.report["records_read"] for run in runs()) == 4, timeout=60,
               description="the new doses read by a scheduled run")
    read_so_far = len(runs())
    wait_until(lambda: len(runs()) >= read_so_far + 2, timeout=60,
               description="two more scheduled runs")

    assert sum(run.report["records_read"] for run in runs()) == 4
    assert [run.report["feed_started"] for run in runs()].count(True) == 1


# --- failures ------------------------------------------------------------------------------------

def test_a_system_that_is_down_fails_the_run_visibly_and_keeps_the_watermark(hub, change_sync):
    kind, feed, system = change_sync
    run_change_sync(hub, kind, TENANT)
    kept = stored_watermark(hub, tenant_row(hub).id, feed)
    system.admin.add_live_records(TENANT, 3)
    system.admin.set_faults(down=True, site=TENANT)

    failed = run_change_sync(hub, kind, TENANT)

    assert failed.outcome == "failed" and "unavailable" in failed.error
    assert stored_watermark(hub, tenant_row(hub).id, feed) == kept
    view = service.get_sync(db_session=hub.database.session, settings=hub.settings,
                            schedule_id=str(failed.schedule_id), tenant_id=None)
    assert view["last_run"]["outcome"] == "failed" and view["consecutive_failures"] == 1

    system.admin.clear_faults()
    recovered: dict = {}

    def reads_the_three() -> bool:
        # The breaker the failure opened lets a trial through after its reset time.
        recovered["run"] = run_change_sync(hub, kind, TENANT)
        return recovered["run"].outcome == "succeeded"

    wait_until(reads_the_three, timeout=60, interval=0.5, description="a run that succeeds")
    assert recovered["run"].report["records_read"] == 3


def test_a_batch_whose_publish_fails_is_read_again_next_run_without_duplicates_or_gaps(
        hub, change_sync):
    _kind, feed, system = change_sync
    read_in_process(hub, feed, Collector(feed))  # starts the feed
    added = system.admin.add_live_records(TENANT, 25)
    crashing = Collector(feed, fail_in_batch=2)

    with pytest.raises(RuntimeError):
        read_in_process(hub, feed, crashing, hub_change_batch_size=10)

    # Batch 1 committed with its watermark; batch 2 left nothing behind.
    assert crashing.published == added["ids"][:10]
    assert stored_watermark(hub, tenant_row(hub).id, feed) == \
        str(added["first_sequence"] + 9)
    assert exactly_once(published_records(hub, EVENT_TYPE[feed]), added["ids"][:10])
    resumed = Collector(feed)
    report = read_in_process(hub, feed, resumed, hub_change_batch_size=10)
    assert crashing.published + resumed.published == added["ids"]
    assert report["records_read"] == 15 and report["batches"] == 2
    assert exactly_once(published_records(hub, EVENT_TYPE[feed]), added["ids"])


def test_a_system_going_down_mid_run_keeps_the_committed_batches_and_the_next_run_resumes(
        hub, change_sync):
    kind, feed, system = change_sync
    run_change_sync(hub, kind, TENANT)
    added = system.admin.add_live_records(TENANT, 30)

    def outage_while_publishing_batch_2(batch: int) -> None:
        if batch == 2:
            system.admin.set_faults(down=True, site=TENANT)

    first = Collector(feed, on_batch=outage_while_publishing_batch_2)
    with pytest.raises(DownstreamUnavailable):
        read_in_process(hub, feed, first, hub_change_batch_size=10)
    system.admin.clear_faults()

    # Batches 1 and 2 were committed with their watermark; reading batch 3 failed.
    committed = first.published
    assert committed == added["ids"][:20]
    assert stored_watermark(hub, tenant_row(hub).id, feed) == str(added["first_sequence"] + 19)
    rest = Collector(feed)
    wait_until(lambda: read_in_process(hub, feed, rest) is not None, timeout=30, interval=0.5,
               description="a run after the outage")
    assert committed + rest.published == added["ids"]
    assert exactly_once(published_records(hub, EVENT_TYPE[feed]), added["ids"])


# --- large sites ---------------------------------------------------------------------------------

def test_a_large_backlog_is_paged_in_batches_and_a_run_stops_at_its_time_budget(
        hub, live_administration):
    feed = "administrations"
    read_in_process(hub, feed, Collector(feed, store=False))
    added = live_administration.admin.add_live_records(TENANT, 100_000)
    collectors, reports = [], []

    while not reports or reports[-1]["budget_reached"]:
        # What is published is proved above; here only paging and the budget are.
        collectors.append(Collector(feed, store=False))
        reports.append(read_in_process(hub, feed, collectors[-1], hub_change_batch_size=1000,
                                       hub_change_run_seconds=1))
        # Each committed batch moved the watermark to its last record.
        done = sum(len(collector.published) for collector in collectors)
        assert stored_watermark(hub, tenant_row(hub).id, feed) == \
            str(added["first_sequence"] + done - 1)
        assert len(reports) <= 100

    # A run holds one batch; it stopped at its budget and the next one went on from there.
    assert len(reports) > 1 and reports[0]["budget_reached"]
    assert all(report["batches"] < 100 for report in reports)
    assert sum(report["records_read"] for report in reports) == 100_000
    assert [record for collector in collectors for record in collector.published] == \
        added["ids"]


# --- PHI and entitlements -------------------------------------------------------------------------

def test_reports_and_watermarks_of_change_syncs_hold_no_phi(hub, live_administration,
                                                            live_inventory):
    for kind, system in (("administration_changes", live_administration),
                         ("movement_changes", live_inventory)):
        run_change_sync(hub, kind, TENANT)
        system.admin.add_live_records(TENANT, 200)
        assert run_change_sync(hub, kind, TENANT).report["events_published"] == 200
    phi = live_administration.admin.export_phi()
    identifiers = set(phi["notes"]) | {value for patient in phi["patients"]
                                       for value in (patient["full_name"], patient["mrn"])}
    assert any(patient["full_name"] in note for note in phi["notes"]
               for patient in phi["patients"][:50])  # named notes were charted

    with hub.database.new_session() as reader:
        rows = [*reader.scalars(select(SyncRun)), *reader.scalars(select(ChangeWatermark)),
                *reader.scalars(select(Event))]
        dump = "\n".join(json.dumps({column.name: getattr(row, column.name)
                                     for column in row.__table__.columns}, default=str)
                         for row in rows)

    assert len(published_records(hub, "administration.recorded")) == 200
    assert leaks_in(dump, identifiers) == []


def test_a_tenant_without_the_inventory_product_has_no_movement_change_sync(hub):
    owners = {(sync.kind.name, sync.tenant.slug if sync.tenant else "hub")
              for sync in service.active_syncs(db_session=hub.database.session)}

    assert ("administration_changes", "lakeside-clinic") in owners
    assert ("movement_changes", "lakeside-clinic") not in owners
    with pytest.raises(Problem):
        service.sync_id_for(db_session=hub.database.session, kind="movement_changes",
                            owner="lakeside-clinic")


# --- backfill ------------------------------------------------------------------------------------

def test_a_backfill_reads_again_from_a_time_and_publishes_only_what_was_not_published(
        hub_app, hub, live_administration):
    cli = hub_cli(hub_app, "syncs")
    run_change_sync(hub, "administration_changes", TENANT)
    # Start at a whole second, so the backfill's time takes in exactly the doses below.
    since = datetime.fromtimestamp(int(time.time()) + 1, UTC)
    wait_until(lambda: time.time() >= since.timestamp(), timeout=5, description="next second")
    earlier = live_administration.admin.add_live_records(TENANT, 4)
    assert run_change_sync(hub, "administration_changes", TENANT).report[
        "events_published"] == 4

    result = cli("backfill-changes", TENANT, "administrations", "--since",
                 since.isoformat().replace("+00:00", "Z"))
    assert result.exit_code == 0, result.output
    later = live_administration.admin.add_live_records(TENANT, 2)
    again = run_change_sync(hub, "administration_changes", TENANT)

    # The four are read again, but the event store already holds them: only the two are new.
    assert again.report["records_read"] == 6 and again.report["events_published"] == 2
    assert exactly_once(published_records(hub, "administration.recorded"),
                        earlier["ids"] + later["ids"])


def test_a_backfill_without_a_time_starts_the_feed_over_from_now(hub_app, hub,
                                                                  live_inventory):
    cli = hub_cli(hub_app, "syncs")
    live_inventory.admin.add_live_records(TENANT, 3)

    result = cli("backfill-changes", TENANT, "movements")

    assert result.exit_code == 0, result.output
    assert stored_watermark(hub, tenant_row(hub).id, "movements") == str(head(live_inventory))
    assert run_change_sync(hub, "movement_changes", TENANT).report["records_read"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (("lakeside-clinic", "movements"), "not entitled"),
    ((TENANT, "administrations", "--since", "2026-12-01T00:00:00"), "UTC offset"),
    ((TENANT, "administrations", "--since", "yesterday"), "ISO 8601"),
])
def test_a_backfill_is_refused_clearly(hub_app, args, message):
    result = hub_cli(hub_app, "syncs")("backfill-changes", *args)

    assert result.exit_code != 0 and message in result.output


def test_a_revoked_entitlement_ends_the_change_sync_and_publishes_nothing(hub, live_inventory):
    from app.entitlements.service import grant_entitlement, revoke_entitlement
    from app.tenants.service import get_product

    session = hub.database.session
    schedule_id = service.sync_id_for(db_session=session, kind="movement_changes", owner=TENANT)
    run_change_sync(hub, "movement_changes", TENANT)
    kept = stored_watermark(hub, tenant_row(hub).id, "movements")
    inventory_product = get_product(db_session=session, code="inventory")
    revoke_entitlement(db_session=session, tenant=tenant_row(hub), product=inventory_product)
    session.commit()
    try:
        live_inventory.admin.add_live_records(TENANT, 3)
        outcome: dict = {}

        def dropped() -> bool:
            # A worker remembers an entitlement for ENTITLEMENT_MEMORY_SECONDS (10 s).
            outcome.update(service.run_sync(db_session=session, redis_client=hub.redis,
                                            settings=hub.settings, schedule_id=schedule_id))
            return outcome["outcome"] == "dropped"

        wait_until(dropped, timeout=30, interval=1, description="the sync dropped")
        assert ("movement_changes", TENANT) not in {
            (sync.kind.name, sync.tenant.slug if sync.tenant else "hub")
            for sync in service.active_syncs(db_session=session)}
        assert stored_watermark(hub, tenant_row(hub).id, "movements") == kept
        assert published_records(hub, "container.moved") == []
    finally:
        grant_entitlement(db_session=session, tenant=tenant_row(hub), product=inventory_product)
        session.commit()
