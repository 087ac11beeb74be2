"""``/v1/admin/syncs`` and ``flask hub syncs``: what an operator sees of the scheduled syncs
(its tenant's and the hub-wide ones), changing a schedule and beat following, running one now,
a failure visible in the API and on ``/metrics`` without reading a log, the nightly counts job,
and no PHI in the runs table.

Runs happen on the session's real worker; every wait is on a run or a job reaching an outcome.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from app.jobs.models import Job
from app.lookups import hot
from app.syncs import beat, service
from app.syncs.models import SyncRun, SyncSchedule
from app.tenants.models import Tenant
from tests.fixtures.cli import hub_cli
from tests.fixtures.phi import leaks_in
from tests.fixtures.problems import assert_problem
from tests.fixtures.processes import wait_until
from tests.fixtures.syncs import finished_run

pytestmark = pytest.mark.usefixtures("demo_tenants", "quiet_schedules")

TENANT = "north-general"
OPERATOR = "north-general-operator"
OTHER_OPERATOR = "river-valley-operator"
VIEW_KEYS = {"id", "sync", "scope", "tenant", "description", "task", "schedule", "enabled",
             "status", "next_due_at", "last_run", "last_succeeded_at", "consecutive_failures",
             "skipped_runs", "updated_at", "updated_by"}
PURGE_REPORT_KEYS = {"started_at", "job_results", "idempotency_keys", "unit_partials",
                     "snapshot_movements", "sync_runs", "events", "audit_events",
                     "outbox_messages"}


# --- helpers -------------------------------------------------------------------------------

def sync_id(hub, kind: str, owner: str = TENANT) -> str:
    return service.sync_id_for(db_session=hub.database.session, kind=kind, owner=owner)


def enable(hub, kind: str, owner: str = TENANT, spec: str | None = None) -> str:
    """Switch one sync on (as the hub's operators do), on ``spec`` or its default."""
    schedule_id = sync_id(hub, kind, owner)
    service.update_sync(db_session=hub.database.session, settings=hub.settings,
                        schedule_id=schedule_id, tenant_id=None, actor="test",
                        schedule=spec, enabled=True)
    return schedule_id


def entry_name(kind: str, owner: str = TENANT) -> str:
    return f"{beat.ENTRY_PREFIX}{kind}:{owner}"


def schedule_row(hub, schedule_id: str) -> dict:
    """What is stored of a schedule, read afresh."""
    with hub.database.new_session() as reader:
        row = reader.get(SyncSchedule, uuid.UUID(schedule_id))
        return {"schedule": row.schedule, "enabled": row.enabled, "updated_at": row.updated_at,
                "updated_by": row.updated_by}


def run_now(hub, kind: str, owner: str = TENANT) -> SyncRun:
    """Send one sync's task as the hub's operators do and wait for its run's outcome."""
    sent = service.trigger_sync(db_session=hub.database.session,
                                schedule_id=sync_id(hub, kind, owner), tenant_id=None)
    return finished_run(hub, sent["task_id"])


def get_sync(api, tokens, schedule_id: str, client: str = OPERATOR):
    return api.get(f"/v1/admin/syncs/{schedule_id}", headers=tokens.headers(client))


def patch_sync(api, tokens, schedule_id: str, body, client: str = OPERATOR):
    return api.patch(f"/v1/admin/syncs/{schedule_id}", json=body,
                     headers=tokens.headers(client))


def listed(api, tokens, client: str = OPERATOR) -> dict[tuple[str, str | None], dict]:
    response = api.get("/v1/admin/syncs", headers=tokens.headers(client))
    assert response.status_code == 200, response.json
    return {(item["sync"], item["tenant"]): item for item in response.json["items"]}


def sync_samples(api) -> dict[tuple[str, frozenset], float]:
    """Every ``hub_sync_*`` sample on ``/metrics``, by name and labels (in any order)."""
    user, _, password = api.application.extensions["hub"].settings.hub_metrics_basic_auth \
        .partition(":")
    response = api.get("/metrics", auth=(user, password))
    assert response.status_code == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples if sample.name.startswith("hub_sync_")}


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def next_time(after: datetime, *, minute: int, hour: int, day: int | None = None,
              month: int | None = None, weekday: int | None = None) -> datetime:
    """The first UTC time after ``after`` at ``hour:minute`` on a day that matches (weekday as
    in a crontab: 0 or 7 Sunday, 1 Monday)."""
    candidate = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
    while not (candidate > after and day in (None, candidate.day)
               and month in (None, candidate.month)
               and weekday in (None, (candidate.weekday() + 1) % 7)):
        candidate += timedelta(days=1)
    return candidate


def close_to(text: str | None, expected: datetime) -> bool:
    """Beat's due time, stored in whole seconds a moment before the entry was saved."""
    return text is not None and abs((moment(text) - expected).total_seconds()) <= 2


def labels(kind: str, tenant: str = TENANT, **more: str) -> frozenset:
    return frozenset({"sync": kind, "tenant": tenant, **more}.items())


# --- listing and reading -------------------------------------------------------------------

def test_an_operator_lists_its_tenants_syncs_and_the_hub_wide_one_never_another_tenants(
        api, tokens, hub, hub_settings):
    enable(hub, "cache_warming")
    enable(hub, "retention_purge", "hub")

    syncs = listed(api, tokens)

    assert set(syncs) == {("inventory_snapshot", TENANT), ("cache_warming", TENANT),
                          ("nightly_counts", TENANT), ("administration_changes", TENANT),
                          ("movement_changes", TENANT), ("retention_purge", None)}
    for item in syncs.values():
        assert VIEW_KEYS <= set(item), item
        assert item["last_run"] is None and item["consecutive_failures"] == 0
        assert item["next_due_at"] is not None if item["enabled"] else item["next_due_at"] is None
    warming = syncs[("cache_warming", TENANT)]
    assert warming["scope"] == "tenant" and warming["enabled"] is True
    assert warming["status"] == "never_run"
    assert warming["schedule"] == {"spec": hub_settings.hub_sync_cache_warming,
                                   "every_seconds": int(hub_settings.hub_sync_cache_warming),
                                   "customized": False}
    # A sync just switched on with an interval runs at beat's next loop…
    assert moment(warming["next_due_at"]) <= datetime.now(UTC)
    purge = syncs[("retention_purge", None)]
    assert purge["scope"] == "hub" and purge["enabled"] is True
    assert purge["schedule"] == {"spec": hub_settings.hub_sync_retention_purge,
                                 "crontab": hub_settings.hub_sync_retention_purge,
                                 "customized": False}
    # …and a crontab waits for its time.
    assert datetime.now(UTC) < moment(purge["next_due_at"]) <= datetime.now(UTC) + \
        timedelta(days=1)
    snapshot = syncs[("inventory_snapshot", TENANT)]
    assert (snapshot["enabled"], snapshot["status"]) == (False, "disabled")
    # Another tenant sees its own, with other ids; the hub-wide sync is the same one.
    theirs = listed(api, tokens, OTHER_OPERATOR)
    assert {tenant for _kind, tenant in theirs} == {"river-valley", None}
    assert {item["id"] for item in theirs.values()} & {item["id"] for item in syncs.values()} \
        == {purge["id"]}


def test_a_tenant_without_the_inventory_system_has_no_inventory_snapshot(api, tokens):
    syncs = listed(api, tokens, "lakeside-clinic-operator")

    # No inventory snapshot and no inventory change detection; the eMAR's syncs are there.
    assert set(syncs) == {("cache_warming", "lakeside-clinic"),
                          ("nightly_counts", "lakeside-clinic"),
                          ("administration_changes", "lakeside-clinic"), ("retention_purge", None)}


@pytest.mark.parametrize("method, path, body", [
    ("get", "/v1/admin/syncs", None),
    ("get", "/v1/admin/syncs/{id}", None),
    ("patch", "/v1/admin/syncs/{id}", {"enabled": True}),
    ("post", "/v1/admin/syncs/{id}/run", None),
])
def test_syncs_need_a_token_with_the_admin_scope(api, tokens, hub, method, path, body):
    schedule_id = sync_id(hub, "cache_warming")
    url = path.format(id=schedule_id)
    before = schedule_row(hub, schedule_id)
    send = getattr(api, method)

    anonymous = send(url, json=body)
    emar = send(url, json=body, headers=tokens.headers("north-general-emar"))
    narrowed = send(url, json=body, headers=tokens.headers(OPERATOR, "jobs:read"))

    assert_problem(anonymous, 401)
    assert "Bearer" in anonymous.headers["WWW-Authenticate"]
    for refused in (emar, narrowed):
        assert_problem(refused, 403)
    assert schedule_row(hub, schedule_id) == before
    assert beat.next_due([entry_name("cache_warming")]) == {entry_name("cache_warming"): None}


@pytest.mark.parametrize("schedule_id", [
    "another-tenants", str(uuid.uuid4()), "not-a-uuid", "1"])
def test_a_sync_the_tenant_cannot_see_is_404(api, tokens, hub, schedule_id):
    if schedule_id == "another-tenants":
        schedule_id = sync_id(hub, "cache_warming", "river-valley")

    response = get_sync(api, tokens, schedule_id)

    assert_problem(response, 404)
    assert response.json["detail"] == "No such sync."


def test_one_sync_shows_its_recent_runs(api, tokens, hub):
    schedule_id = sync_id(hub, "cache_warming")

    before = get_sync(api, tokens, schedule_id)

    assert before.status_code == 200, before.json
    assert before.json["recent_runs"] == [] and before.json["id"] == schedule_id
    # Runs recorded for it (as a worker records them) show newest first.
    session = hub.database.session
    now = datetime.now(UTC)
    for minutes_ago, outcome in ((3, "succeeded"), (2, "skipped"), (1, "failed")):
        session.add(SyncRun(schedule_id=uuid.UUID(schedule_id), outcome=outcome,
                            started_at=now - timedelta(minutes=minutes_ago),
                            finished_at=now - timedelta(minutes=minutes_ago),
                            duration_ms=1500, report={"candidates": 0},
                            error="Unexpected error (ValueError); see the worker log."
                            if outcome == "failed" else None))
    session.commit()

    after = get_sync(api, tokens, schedule_id).json

    assert [run["outcome"] for run in after["recent_runs"]] == ["failed", "skipped", "succeeded"]
    assert after["recent_runs"][0]["duration_seconds"] == 1.5
    assert after["recent_runs"][2]["report"] == {"candidates": 0}
    # A skip is not the last run: it never started.
    assert after["last_run"]["outcome"] == "failed"
    assert after["last_succeeded_at"] is not None


# --- changing a schedule -------------------------------------------------------------------

def test_changing_a_schedule_reaches_beat_and_null_returns_to_the_default(
        api, tokens, hub, hub_settings):
    schedule_id = sync_id(hub, "cache_warming")
    name = entry_name("cache_warming")
    before = datetime.now(UTC)

    nightly = patch_sync(api, tokens, schedule_id, {"schedule": "0  0 * * *", "enabled": True})

    after = datetime.now(UTC)
    assert nightly.status_code == 200, nightly.json
    assert nightly.json["enabled"] is True and nightly.json["status"] == "never_run"
    assert nightly.json["updated_by"] == f"client:{OPERATOR}"
    assert nightly.json["schedule"] == {"spec": "0 0 * * *", "crontab": "0 0 * * *",
                                        "customized": True}
    # A crontab (UTC) waits for its time.
    assert close_to(nightly.json["next_due_at"], next_time(before, minute=0, hour=0))
    assert beat.next_due([name])[name] == moment(nightly.json["next_due_at"])

    every_ten = patch_sync(api, tokens, schedule_id, {"schedule": " 600 "})

    assert every_ten.status_code == 200, every_ten.json
    assert every_ten.json["schedule"] == {"spec": "600", "every_seconds": 600, "customized": True}
    # Beat's entry keeps its last run: the interval counts from when the sync was switched on.
    due = moment(every_ten.json["next_due_at"])
    assert before + timedelta(seconds=599) <= due <= after + timedelta(seconds=601)
    assert beat.next_due([name])[name] == due
    assert get_sync(api, tokens, schedule_id).json["schedule"]["customized"] is True

    back = patch_sync(api, tokens, schedule_id, {"schedule": None})

    assert back.status_code == 200, back.json
    default_seconds = int(hub_settings.hub_sync_cache_warming)
    assert back.json["schedule"] == {"spec": hub_settings.hub_sync_cache_warming,
                                     "every_seconds": default_seconds, "customized": False}
    assert schedule_row(hub, schedule_id)["schedule"] is None
    moved = due - moment(back.json["next_due_at"])
    assert abs(moved.total_seconds() - (600 - default_seconds)) < 1
    assert beat.next_due([name])[name] == moment(back.json["next_due_at"])


@pytest.mark.parametrize("spec, fields", [
    ("0 6 * * 1", {"minute": 0, "hour": 6, "weekday": 1}),
    ("0 0 1 1 *", {"minute": 0, "hour": 0, "day": 1, "month": 1}),
    ("15 3 31 * *", {"minute": 15, "hour": 3, "day": 31}),
])
def test_a_crontab_reads_minute_hour_day_of_month_month_weekday(api, tokens, hub, spec, fields):
    schedule_id = sync_id(hub, "cache_warming")
    now = datetime.now(UTC)

    response = patch_sync(api, tokens, schedule_id, {"schedule": spec, "enabled": True})

    assert response.status_code == 200, response.json
    assert response.json["schedule"] == {"spec": spec, "crontab": spec, "customized": True}
    assert close_to(response.json["next_due_at"], next_time(now, **fields)), \
        f"{spec} is next due {response.json['next_due_at']}, not {next_time(now, **fields)}"


def test_switching_a_sync_off_removes_its_beat_entry(api, tokens, hub):
    schedule_id = enable(hub, "cache_warming", spec="120")
    name = entry_name("cache_warming")
    assert beat.next_due([name])[name] is not None

    response = patch_sync(api, tokens, schedule_id, {"enabled": False})

    assert response.status_code == 200, response.json
    assert (response.json["enabled"], response.json["status"]) == (False, "disabled")
    assert response.json["next_due_at"] is None
    # The override is kept for when it is switched back on.
    assert response.json["schedule"]["spec"] == "120"
    assert beat.next_due([name]) == {name: None}
    assert listed(api, tokens)[("cache_warming", TENANT)]["next_due_at"] is None

    again = patch_sync(api, tokens, schedule_id, {"enabled": True})

    assert again.json["status"] == "never_run" and again.json["next_due_at"] is not None
    # A re-enabled interval sync runs at beat's next loop, not one interval later.
    assert moment(again.json["next_due_at"]) <= datetime.now(UTC)
    assert beat.next_due([name])[name] <= datetime.now(UTC)


@pytest.mark.parametrize("body, field", [
    ({"schedule": "abc"}, "schedule"),
    ({"schedule": "0"}, "schedule"),
    ({"schedule": "90000"}, "schedule"),
    ({"schedule": "99 * * * *"}, "schedule"),
    ({"schedule": "* * * *"}, "schedule"),
    ({"schedule": ""}, "schedule"),
    ({"schedule": 600}, "schedule"),
    ({"enabled": "maybe"}, "enabled"),
    ({"enabled": None}, "enabled"),
    ({"enabled": False, "interval": 60}, "interval"),
    ({}, "_schema"),
    (None, "_schema"),
    ([{"enabled": False}], "_schema"),
])
def test_an_invalid_change_is_422_and_changes_nothing(api, tokens, hub, body, field):
    schedule_id = enable(hub, "cache_warming", spec="120")
    name = entry_name("cache_warming")
    stored, due = schedule_row(hub, schedule_id), beat.next_due([name])

    response = patch_sync(api, tokens, schedule_id, body)

    assert_problem(response, 422)
    assert field in response.json["errors"]["json"], response.json
    assert schedule_row(hub, schedule_id) == stored
    assert beat.next_due([name]) == due and due[name] is not None


def test_a_tenant_cannot_change_the_hub_wide_sync_or_another_tenants(api, tokens, hub):
    purge_id = enable(hub, "retention_purge", "hub")
    theirs = sync_id(hub, "cache_warming", "river-valley")
    before = {purge_id: schedule_row(hub, purge_id), theirs: schedule_row(hub, theirs)}

    hub_wide = patch_sync(api, tokens, purge_id, {"enabled": False})
    other_tenant = patch_sync(api, tokens, theirs, {"enabled": True})

    assert_problem(hub_wide, 403)
    assert hub_wide.json["type"].endswith("/hub-wide-sync")
    assert_problem(other_tenant, 404)
    assert {purge_id: schedule_row(hub, purge_id), theirs: schedule_row(hub, theirs)} == before
    assert beat.next_due([entry_name("retention_purge", "hub")])[
        entry_name("retention_purge", "hub")] is not None
    assert beat.next_due([entry_name("cache_warming", "river-valley")]) == {
        entry_name("cache_warming", "river-valley"): None}


# --- running one now -----------------------------------------------------------------------

@pytest.mark.usefixtures("celery_worker", "clean_lookup_state")
def test_running_a_sync_now_records_a_run_the_tenant_sees_with_its_report(api, tokens, hub):
    schedule_id = enable(hub, "cache_warming", spec="3600")

    response = api.post(f"/v1/admin/syncs/{schedule_id}/run", headers=tokens.headers(OPERATOR))

    assert response.status_code == 202, response.json
    assert response.json["id"] == schedule_id and response.json["task_id"]
    run = finished_run(hub, response.json["task_id"])
    assert run.outcome == "succeeded", run.error
    view = get_sync(api, tokens, schedule_id).json
    assert view["status"] == "ok" and view["consecutive_failures"] == 0
    assert view["last_run"]["id"] == str(run.id) and view["last_run"]["outcome"] == "succeeded"
    assert view["last_run"]["report"] == run.report
    assert set(run.report) == {"candidates", "refreshed", "unavailable", "not_found", "refused"}
    assert view["last_succeeded_at"] == view["last_run"]["finished_at"]
    assert [recent["id"] for recent in view["recent_runs"]] == [str(run.id)]


def test_a_tenant_cannot_run_the_hub_wide_sync_or_another_tenants(api, tokens, hub):
    purge_id = sync_id(hub, "retention_purge", "hub")
    theirs = sync_id(hub, "cache_warming", "river-valley")

    hub_wide = api.post(f"/v1/admin/syncs/{purge_id}/run", headers=tokens.headers(OPERATOR))
    other_tenant = api.post(f"/v1/admin/syncs/{theirs}/run", headers=tokens.headers(OPERATOR))

    assert_problem(hub_wide, 403)
    assert hub_wide.json["type"].endswith("/hub-wide-sync")
    assert_problem(other_tenant, 404)


@pytest.mark.usefixtures("celery_worker", "clean_lookup_state")
def test_a_failed_run_shows_in_the_api_and_on_metrics_without_a_log(
        api, tokens, hub, demo_inventory, seeded_identifiers):
    schedule_id = enable(hub, "inventory_snapshot", spec="3600")
    demo_inventory.admin.set_faults(down=True, site=TENANT)

    sent = api.post(f"/v1/admin/syncs/{schedule_id}/run", headers=tokens.headers(OPERATOR))

    assert sent.status_code == 202, sent.json
    run = finished_run(hub, sent.json["task_id"])
    assert run.outcome == "failed"
    view = get_sync(api, tokens, schedule_id).json
    assert view["status"] == "failing" and view["consecutive_failures"] == 1
    assert view["last_run"]["outcome"] == "failed" and view["last_run"]["report"] is None
    assert view["last_run"]["error"] == ("The inventory system is unavailable (it timed out, "
                                         "failed, or its circuit breaker is open).")
    assert leaks_in(json.dumps(view), seeded_identifiers) == []
    assert view["last_succeeded_at"] is None
    samples = sync_samples(api)
    snapshot = labels("inventory_snapshot")
    assert samples[("hub_sync_last_outcome", labels("inventory_snapshot", outcome="failed"))] \
        == 1.0
    assert samples[("hub_sync_last_outcome", labels("inventory_snapshot", outcome="succeeded"))] \
        == 0.0
    assert samples[("hub_sync_consecutive_failures", snapshot)] == 1.0
    assert samples[("hub_sync_enabled", snapshot)] == 1.0
    assert samples[("hub_sync_interval_seconds", snapshot)] == 3600.0
    assert samples[("hub_sync_next_due_timestamp_seconds", snapshot)] == moment(
        view["next_due_at"]).timestamp()
    assert samples[("hub_sync_skipped_runs_total", snapshot)] == 0.0
    assert ("hub_sync_last_success_timestamp_seconds", snapshot) not in samples
    # Another tenant's same sync is untouched by north-general's failure.
    assert samples[("hub_sync_consecutive_failures", labels("inventory_snapshot",
                                                            "river-valley"))] == 0.0
    assert samples[("hub_sync_enabled", labels("inventory_snapshot", "river-valley"))] == 0.0


# --- the nightly counts job ----------------------------------------------------------------

def _release_nightly_key(hub, day: str) -> None:
    """Let this test's run submit the day's job even if an earlier test already did."""
    session = hub.database.session
    tenant = session.scalar(select(Tenant).where(Tenant.slug == TENANT))
    session.execute(update(Job).where(
        Job.tenant_id == tenant.id,
        Job.idempotency_key == f"nightly-administration-counts:{day}").values(
        idempotency_key=None))
    session.commit()


@pytest.mark.usefixtures("celery_worker", "clean_lookup_state")
def test_nightly_counts_submit_the_previous_local_days_job_once(
        api, tokens, hub, demo_manifest):
    zone = ZoneInfo(next(site["timezone"] for site in demo_manifest["sites"]
                         if site["site"] == TENANT))
    yesterday = datetime.now(zone).date() - timedelta(days=1)
    _release_nightly_key(hub, yesterday.isoformat())
    schedule_id = sync_id(hub, "nightly_counts")

    sent = api.post(f"/v1/admin/syncs/{schedule_id}/run", headers=tokens.headers(OPERATOR))

    assert sent.status_code == 202, sent.json
    first = finished_run(hub, sent.json["task_id"])
    assert first.outcome == "succeeded", first.error
    assert first.report["day"] == yesterday.isoformat()
    assert first.report["submitted"] is True
    job_id = first.report["job_id"]
    jobs = api.get("/v1/jobs?type=administration_counts&page_size=200",
                   headers=tokens.headers(OPERATOR, "jobs:read"))
    assert jobs.status_code == 200, jobs.json
    job = next(item for item in jobs.json["items"] if item["id"] == job_id)
    window = {bound: moment(job["params"]["window"][bound]) for bound in ("since", "until")}
    assert window == {"since": datetime.combine(yesterday, time.min, zone),
                      "until": datetime.combine(yesterday + timedelta(days=1), time.min, zone)}

    def job_finished() -> bool:
        shown = api.get(f"/v1/jobs/{job_id}", headers=tokens.headers(OPERATOR)).json
        assert shown["status"] in {"queued", "running", "succeeded"}, shown
        return shown["status"] == "succeeded"

    wait_until(job_finished, timeout=60, interval=0.2, description="the nightly job")

    def same_day_jobs() -> list[str]:
        # Earlier tests may have submitted the same day's job before its key was released.
        return [item["id"] for item in api.get(
            "/v1/jobs?type=administration_counts&page_size=200",
            headers=tokens.headers(OPERATOR)).json["items"]
            if item["params"]["window"] == job["params"]["window"]]

    before = same_day_jobs()
    again = run_now(hub, "nightly_counts")

    assert again.outcome == "succeeded", again.error
    assert again.report["submitted"] is False and again.report["job_id"] == job_id
    assert again.report["job_status"] == "succeeded"
    assert job_id in before and same_day_jobs() == before


# --- hub-wide reports stay with the hub's operators ----------------------------------------

@pytest.mark.usefixtures("celery_worker")
def test_a_tenant_sees_the_hub_wide_purges_health_but_not_its_report(api, tokens, hub,
                                                                     hub_app):
    purge_id = enable(hub, "retention_purge", "hub")
    run = run_now(hub, "retention_purge", "hub")
    assert run.outcome == "succeeded", run.error
    assert set(run.report) == PURGE_REPORT_KEYS

    for client in (OPERATOR, OTHER_OPERATOR):
        listed_purge = listed(api, tokens, client)[("retention_purge", None)]
        one = get_sync(api, tokens, purge_id, client).json
        for view in (listed_purge, one):
            assert view["status"] == "ok" and view["last_run"]["outcome"] == "succeeded"
            assert view["last_run"]["id"] == str(run.id)
            assert view["last_run"]["report"] is None
        assert [recent["report"] for recent in one["recent_runs"]] == [None]

    shown = hub_app.test_cli_runner().invoke(
        args=["hub", "syncs", "show", "retention_purge", "hub"], catch_exceptions=False)

    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.output)
    assert view["last_run"]["report"] == run.report
    assert view["recent_runs"][0]["report"] == run.report


# --- the CLI -------------------------------------------------------------------------------

@pytest.fixture
def cli(hub_app):
    return hub_cli(hub_app, "syncs")


def test_cli_lists_every_tenants_syncs(cli, hub):
    enable(hub, "cache_warming", spec="120")

    result = cli("list")

    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()
            if line and not line.startswith((" ", "("))]
    shown = {(row[0], row[1]) for row in rows}
    expected = {(sync.kind.name, sync.tenant.slug if sync.tenant else "hub")
                for sync in service.active_syncs(db_session=hub.database.session)}
    assert shown == expected and len(rows) == len(expected)
    assert {("inventory_snapshot", "north-general"), ("inventory_snapshot", "river-valley"),
            ("nightly_counts", "lakeside-clinic"), ("retention_purge", "hub")} <= shown
    assert ("inventory_snapshot", "lakeside-clinic") not in shown
    warming = next(row for row in rows if row[:2] == ["cache_warming", TENANT])
    assert warming[2] == "120*" and warming[3] == "never_run"
    assert next(row for row in rows if row[:2] == ["cache_warming", "river-valley"])[3] == \
        "disabled"


def test_cli_changes_a_schedule_and_switches_a_sync_off_and_on(cli, hub, hub_settings):
    schedule_id = sync_id(hub, "cache_warming")
    name = entry_name("cache_warming")

    custom = cli("set", "cache_warming", TENANT, "--schedule", "120", "--enable")

    assert custom.exit_code == 0, custom.output
    assert custom.output.startswith(f"cache_warming for {TENANT}: schedule 120, enabled, next due")
    assert schedule_row(hub, schedule_id)["schedule"] == "120"
    assert schedule_row(hub, schedule_id)["updated_by"] == "cli"
    assert beat.next_due([name])[name] is not None

    default = cli("set", "cache_warming", TENANT, "--default")

    assert default.exit_code == 0, default.output
    assert f"schedule {hub_settings.hub_sync_cache_warming}, enabled" in default.output
    assert schedule_row(hub, schedule_id)["schedule"] is None

    off = cli("set", "cache_warming", TENANT, "--disable")

    assert off.exit_code == 0, off.output
    assert "disabled, next due -" in off.output
    assert schedule_row(hub, schedule_id)["enabled"] is False
    assert beat.next_due([name]) == {name: None}

    on = cli("set", "cache_warming", TENANT, "--enable")

    assert on.exit_code == 0, on.output
    assert schedule_row(hub, schedule_id)["enabled"] is True
    assert beat.next_due([name])[name] is not None


@pytest.mark.parametrize("args, message", [
    (["set", "cache_warming", TENANT, "--schedule", "abc"], "expected seconds between runs"),
    (["set", "cache_warming", TENANT, "--schedule", "0"], "an interval must be between"),
    (["set", "cache_warming", TENANT, "--schedule", "99 * * * *"], "not a valid crontab"),
    (["set", "cache_warming", TENANT, "--schedule", "120", "--default"], "not both"),
    (["set", "cache_warming", TENANT], "nothing to change"),
    (["set", "cache_warming", "nowhere-general", "--enable"],
     "No active cache_warming sync for nowhere-general"),
    (["set", "inventory_snapshot", "lakeside-clinic", "--enable"],
     "No active inventory_snapshot sync for lakeside-clinic"),
    (["set", "defragment", TENANT, "--enable"], "No active defragment sync"),
    (["show", "cache_warming", "nowhere-general"], "No active cache_warming sync"),
    (["run", "defragment", "hub"], "No active defragment sync"),
])
def test_cli_refuses_bad_schedules_and_unknown_syncs_clearly(cli, hub, args, message):
    schedule_id = sync_id(hub, "cache_warming")
    before = schedule_row(hub, schedule_id)

    result = cli(*args)

    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert schedule_row(hub, schedule_id) == before


def test_cli_apply_writes_the_enabled_syncs_into_beat_and_prints_counts(cli, hub):
    enable(hub, "cache_warming")
    enable(hub, "retention_purge", "hub")
    everything = len(service.active_syncs(db_session=hub.database.session))
    removed_entry = entry_name("cache_warming")
    beat.write_entries({})  # beat lost its entries: apply puts them back

    result = cli("apply")

    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts == {"schedules": everything, "enabled": 2, "added": 2, "changed": 0,
                      "removed": 0}
    assert beat.next_due([removed_entry])[removed_entry] is not None
    assert json.loads(cli("apply").output) == {**counts, "added": 0}


# --- cache warming ---------------------------------------------------------------------

def _make_lookups_hot(api, tokens, demo_inventory) -> None:
    """Lookups of patient-bearing data, so cache warming refreshes them."""
    inventory_client = tokens.headers(f"{TENANT}-inventory")
    emar = tokens.headers(f"{TENANT}-emar")
    assert api.get("/v1/administrations?page_size=50",
                   headers=inventory_client).status_code == 200
    container = demo_inventory.get(TENANT, "/containers", limit=1).json()["items"][0]
    assert api.get(f"/v1/containers/{container['containerId']}/origin",
                   headers=emar).status_code == 200
    assert api.get("/v1/inventory?page_size=20", headers=emar).status_code == 200


@pytest.mark.usefixtures("celery_worker", "clean_lookup_state")
def test_cache_warming_refreshes_the_lookups_clients_made(api, tokens, hub, demo_inventory):
    hub.redis.delete(hot.HOT_KEY.format(tenant=TENANT))
    _make_lookups_hot(api, tokens, demo_inventory)

    run = run_now(hub, "cache_warming")

    assert run.outcome == "succeeded", run.error
    assert run.report == {"candidates": 3, "refreshed": 3, "unavailable": 0, "not_found": 0,
                          "refused": 0}


@pytest.mark.usefixtures("celery_worker", "clean_lookup_state")
def test_cache_warming_refreshes_recorded_lookups_through_the_lookup_path(hub):
    hub.redis.delete(hot.HOT_KEY.format(tenant=TENANT))
    for _use in range(3):
        hot.record_use(hub.redis, tenant=TENANT, lookup="inventory", consumer="administration",
                       args={"unit": None, "ndc11": None, "cursor": None, "page_size": 20})
    hot.record_use(hub.redis, tenant=TENANT, lookup="container_origin",
                   consumer="administration", args={"container_id": "no-such-container"})

    run = run_now(hub, "cache_warming")

    assert run.outcome == "succeeded", run.error
    assert run.report == {"candidates": 2, "refreshed": 1, "unavailable": 0, "not_found": 1,
                          "refused": 0}


# --- PHI -----------------------------------------------------------------------------------

@pytest.mark.usefixtures("celery_worker", "clean_lookup_state")
def test_the_runs_table_holds_no_phi_after_runs_of_every_kind(
        api, tokens, hub, demo_inventory, seeded_identifiers):
    _make_lookups_hot(api, tokens, demo_inventory)
    kinds = [("inventory_snapshot", TENANT), ("cache_warming", TENANT),
             ("nightly_counts", TENANT), ("nightly_counts", "lakeside-clinic"),
             ("retention_purge", "hub")]
    runs = [run_now(hub, kind, owner) for _round in range(2) for kind, owner in kinds]
    assert {run.outcome for run in runs} == {"succeeded"}, [run.error for run in runs]
    # A failed run's error, too.
    demo_inventory.admin.set_faults(down=True, site=TENANT)
    assert run_now(hub, "inventory_snapshot").outcome == "failed"

    with hub.database.new_session() as reader:
        rows = reader.scalars(select(SyncRun)).all()
        dump = "\n".join(json.dumps({column.name: getattr(row, column.name)
                                     for column in SyncRun.__table__.columns}, default=str)
                         for row in rows)

    assert {run.id for run in runs} < {row.id for row in rows}
    assert leaks_in(dump, seeded_identifiers) == []
