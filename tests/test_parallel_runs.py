"""Parallel runs (shadow mode): a lookup's answers compared with the legacy endpoint it
replaces, on the session's real worker, against the demo inventory's quirky legacy API and a
legacy endpoint the test controls (tests/fixtures/legacy.py).

What the caller receives never depends on the legacy endpoint, nor waits for it; what the
report keeps is field paths, kinds and counts, with values only of fields the PHI policy passes
through unchanged.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, select

from app.parallel_runs import service
from app.parallel_runs.comparison import differences, disclosed_fields, field_of, shown_value
from app.parallel_runs.models import ParallelRun, ParallelRunDifference
from app.phi.boundary import reportable_value
from app.phi.policy import disclosed_paths
from app.tenants.models import Connection, Product
from app.tenants.service import get_tenant_by_slug
from tests.fixtures.cli import hub_cli
from tests.fixtures.legacy import legacy_document, legacy_endpoint
from tests.fixtures.phi import leaks_in, redis_dump
from tests.fixtures.problems import assert_problem
from tests.fixtures.processes import free_port, wait_until

pytestmark = pytest.mark.usefixtures("demo_tenants", "clean_lookup_state", "own_breakers")

NORTH = "north-general"
EMAR = "north-general-emar"
OPERATOR = "north-general-operator"
OTHER_OPERATOR = "river-valley-operator"
NORTH_ZONE = "America/New_York"


# --- helpers -------------------------------------------------------------------------------

@pytest.fixture
def hub(hub_app):
    """The hub's resources, with no parallel run configured before or after the test."""
    def forget_runs() -> None:
        with hub_app.extensions["hub"].database.new_session() as session:
            session.execute(delete(ParallelRun))
            session.commit()

    forget_runs()
    with hub_app.app_context():
        yield hub_app.extensions["hub"]
        hub_app.extensions["hub"].database.remove_session()
    forget_runs()


def tenant_id(hub, slug: str = NORTH) -> str:
    return str(get_tenant_by_slug(db_session=hub.database.session, slug=slug).id)


def inventory_credential_ref(hub, slug: str = NORTH) -> str:
    """The credential reference of the tenant's inventory connection (the demo legacy API takes
    the same key as the current one)."""
    return hub.database.session.scalar(
        select(Connection.credential_ref).join(Product, Product.id == Connection.product_id)
        .where(Connection.tenant_id == uuid.UUID(tenant_id(hub, slug)),
               Product.code == "inventory"))


def configure(hub, base_url: str, *, timezone: str = NORTH_ZONE, sample_rate: float = 1.0,
              slug: str = NORTH) -> str:
    """Configure the tenant's parallel run of container_origin as the hub's operators do."""
    view = service.configure_parallel_run(
        db_session=hub.database.session, tenant_id=tenant_id(hub, slug),
        lookup="container_origin", actor="test", legacy_base_url=base_url,
        legacy_credential_ref=inventory_credential_ref(hub, slug), legacy_timezone=timezone,
        sample_rate=sample_rate, enabled=True)
    return view["id"]


def demo_legacy_url(demo_inventory, slug: str = NORTH) -> str:
    return f"{demo_inventory.base_url}/legacy/v1/sites/{slug}"


def dispensed_containers(demo_inventory, count: int, offset: int = 0) -> list[str]:
    page = demo_inventory.get(NORTH, "/containers", status="dispensed", limit=count,
                              offset=offset).json()
    return [item["containerId"] for item in page["items"]]


def forget_cached_lookups(hub) -> None:
    keys = list(hub.redis.scan_iter(match="customer:*", count=500))
    if keys:
        hub.redis.delete(*keys)


def origin(api, tokens, container_id: str):
    """The live lookup, as the eMAR asks it; timed."""
    started = time.perf_counter()
    response = api.get(f"/v1/containers/{container_id}/origin", headers=tokens.headers(EMAR))
    return response, time.perf_counter() - started


def counts(hub, run_id: str) -> dict:
    with hub.database.new_session() as reader:
        run = reader.get(ParallelRun, uuid.UUID(run_id))
        return {"comparisons": run.comparisons, "matches": run.matches,
                "mismatches": run.mismatches, "legacy_errors": run.legacy_errors,
                "last_legacy_error": run.last_legacy_error}


def compared(hub, run_id: str, total: int, timeout: float = 60) -> dict:
    """The run's counts once ``total`` comparisons are recorded."""
    wait_until(lambda: counts(hub, run_id)["comparisons"] >= total, timeout=timeout,
               interval=0.1, description=f"{total} comparison(s) recorded")
    return counts(hub, run_id)


def breaker_failures(hub, name: str) -> int:
    """Failed calls the breaker ``name`` counts now (pybreaker's counter in Redis)."""
    return int(hub.redis.get(f"hub:breaker:{name}:pybreaker:fail_counter") or 0)


def report(api, tokens, run_id: str, client: str = OPERATOR) -> dict:
    response = api.get(f"/v1/admin/parallel-runs/{run_id}", headers=tokens.headers(client))
    assert response.status_code == 200, response.json
    return response.json


# --- the comparison itself -----------------------------------------------------------------

def test_differences_name_each_field_by_path_and_kind():
    hub_answer = {"lot": "A1", "count": 3, "movements": [{"at": "x"}, {"at": "y"}, {"at": "z"}],
                  "location": {"unit": "ICU-3", "cabinet": None}}
    legacy_answer = {"lot": "a1", "count": "3", "movements": [{"at": "x"}, {"at": "Y"}],
                     "location": {"unit": "ICU-3", "cabinet": "ICU-3-CAB1"}, "spare": True}

    found = {(d.path, d.field, d.kind) for d in differences(hub_answer, legacy_answer)}

    assert found == {("lot", "lot", "changed"), ("count", "count", "type"),
                     ("movements[1].at", "movements[].at", "changed"),
                     ("movements[2]", "movements[]", "missing"),
                     ("location.cabinet", "location.cabinet", "extra"),
                     ("spare", "spare", "extra")}
    assert differences(hub_answer, hub_answer) == []
    assert field_of("movements[12].at") == "movements[].at"


def test_a_report_shows_values_only_of_fields_the_policy_keeps_and_never_identifier_shapes():
    disclosed = disclosed_fields("administration", "operator")

    # Pseudonyms and generalized birth dates stand for PHI: their values are never shown.
    for field in ("patient.ref", "patient.birth_year", "nurse_ref", "patient.mrn", "note"):
        assert shown_value("anything", field, disclosed) is None, field
    assert shown_value("ICU-3", "unit", disclosed) == "ICU-3"
    assert shown_value(2.5, "dose.quantity", disclosed) == "2.5"
    # Even a kept field's value is refused when it looks like an identifier or free text.
    assert shown_value("MRN 00123456", "route", disclosed) is None
    assert shown_value("x" * 65, "route", disclosed) is None
    assert shown_value({"at": "x"}, "movements[]", disclosed_fields("container_origin",
                                                                    "operator")) is None
    assert "items[].lot" in disclosed_fields("container", "operator", "items[].")


# --- against the demo inventory's legacy API -----------------------------------------------

def test_the_quirky_legacy_endpoint_shows_the_dropped_movement_and_the_lower_case_lot(
        api, tokens, hub, demo_inventory, celery_worker):
    run_id = configure(hub, demo_legacy_url(demo_inventory))
    container_id = dispensed_containers(demo_inventory, 1)[0]

    response, _ = origin(api, tokens, container_id)

    assert response.status_code == 200 and response.headers["X-Cache"] == "MISS"
    live = response.json
    assert compared(hub, run_id, 1) == {"comparisons": 1, "matches": 0, "mismatches": 1,
                                        "legacy_errors": 0, "last_legacy_error": None}
    shown = report(api, tokens, run_id)
    assert shown["mismatch_rate"] == 1.0 and shown["counts"]["mismatches"] == 1
    assert {(item["field"], item["kind"], item["count"]) for item in shown["top_fields"]} == \
        {("lot", "changed", 1), ("movements[]", "missing", 1)}
    by_path = {item["path"]: item for item in shown["recent_differences"]}
    # The site's local times read in its own zone agree with the hub's: no time differs.
    assert set(by_path) == {"lot", "movements[2]"}
    assert (by_path["lot"]["hub_value"], by_path["lot"]["legacy_value"]) == \
        (live["lot"], live["lot"].lower())
    # A whole movement is an object: its values are never shown.
    assert by_path["movements[2]"]["hub_value"] is None
    assert by_path["movements[2]"]["legacy_value"] is None


def test_legacy_local_times_read_in_the_wrong_zone_differ_at_every_remaining_movement(
        api, tokens, hub, demo_inventory, celery_worker):
    run_id = configure(hub, demo_legacy_url(demo_inventory), timezone="UTC")

    origin(api, tokens, dispensed_containers(demo_inventory, 1, offset=1)[0])

    compared(hub, run_id, 1)
    paths = {item["path"] for item in report(api, tokens, run_id)["recent_differences"]}
    assert paths == {"lot", "movements[0].at", "movements[1].at", "movements[2]"}


def test_identical_answers_count_as_matches(api, tokens, hub, demo_inventory, celery_worker):
    container_id = dispensed_containers(demo_inventory, 1, offset=2)[0]
    live, _ = origin(api, tokens, container_id)
    forget_cached_lookups(hub)
    with legacy_endpoint() as legacy:
        legacy.document = legacy_document(live.json)
        run_id = configure(hub, legacy.base_url, timezone="UTC")

        again, _ = origin(api, tokens, container_id)

        assert compared(hub, run_id, 1)["matches"] == 1
    assert again.json == live.json
    assert legacy.paths == [f"/legacy/v1/containers/{container_id}/origin"]
    shown = report(api, tokens, run_id)
    assert shown["mismatch_rate"] == 0.0 and shown["recent_differences"] == []


# --- the live answer never depends on the legacy endpoint ----------------------------------

def test_a_slow_legacy_endpoint_neither_delays_nor_changes_the_live_answer(
        api, tokens, hub, demo_inventory, celery_worker):
    container_id = dispensed_containers(demo_inventory, 1, offset=3)[0]
    # The same lookup with no parallel run: the answer to compare with.
    without_shadow, seconds_without = origin(api, tokens, container_id)
    forget_cached_lookups(hub)
    with legacy_endpoint() as legacy:
        legacy.hold = True
        legacy.document = legacy_document(without_shadow.json)
        run_id = configure(hub, legacy.base_url, timezone="UTC")

        with_shadow, seconds_with = origin(api, tokens, container_id)
        answered = time.monotonic()
        # The worker's call reaches the legacy endpoint, which holds it…
        wait_until(lambda: legacy.requests == 1, timeout=30, description="the legacy call")
        assert legacy.answered_at == []
        legacy.release()
        compared(hub, run_id, 1)

    # …while the caller already had its answer, the same as without the parallel run.
    assert answered < legacy.answered_at[0]
    assert with_shadow.status_code == without_shadow.status_code == 200
    assert with_shadow.json == without_shadow.json
    # Measured, not asserted against a threshold (shared machines jitter): both are shown in
    # the test's output for a reader comparing them.
    print(f"live lookup: {seconds_without * 1000:.1f} ms without, {seconds_with * 1000:.1f} ms "
          f"with the parallel run; the legacy answer came "
          f"{(legacy.answered_at[0] - answered) * 1000:.0f} ms after the live one")


def test_a_dead_legacy_endpoint_counts_as_a_legacy_error_and_opens_only_its_own_breaker(
        api, tokens, hub, demo_inventory, celery_worker):
    run_id = configure(hub, f"http://127.0.0.1:{free_port()}/legacy/v1")
    container_ids = dispensed_containers(demo_inventory, 2, offset=4)

    answers = [origin(api, tokens, container_id)[0] for container_id in container_ids]

    assert [answer.status_code for answer in answers] == [200, 200]
    assert [answer.json["container_id"] for answer in answers] == container_ids
    seen = compared(hub, run_id, 2)
    assert (seen["legacy_errors"], seen["last_legacy_error"]) == (2, "unavailable")
    # The legacy link's breaker counted the failures; the live link's knows nothing of them.
    assert breaker_failures(hub, f"legacy:{NORTH}:container_origin") == 2
    assert breaker_failures(hub, f"{NORTH}:inventory") == 0
    assert report(api, tokens, run_id)["mismatch_rate"] is None


@pytest.mark.parametrize("body", [b"not json at all", b"[1, 2, 3]",
                                  b'{"container_no": "NGH-C1", "moves": "soon"}'])
def test_a_legacy_answer_that_cannot_be_read_counts_as_a_legacy_error(
        api, tokens, hub, demo_inventory, celery_worker, body):
    container_id = dispensed_containers(demo_inventory, 1, offset=6)[0]
    with legacy_endpoint() as legacy:
        legacy.raw_body = body
        run_id = configure(hub, legacy.base_url)

        response, _ = origin(api, tokens, container_id)

        seen = compared(hub, run_id, 1)
    assert response.status_code == 200 and response.json["container_id"] == container_id
    assert seen["legacy_errors"] == 1
    assert seen["last_legacy_error"] in {"unusable", "unavailable"}


def test_sampling_zero_never_calls_the_legacy_endpoint(api, tokens, hub, demo_inventory,
                                                       celery_worker):
    first, second = dispensed_containers(demo_inventory, 2, offset=7)
    live, _ = origin(api, tokens, second)
    forget_cached_lookups(hub)
    with legacy_endpoint() as legacy:
        legacy.document = legacy_document(live.json)
        run_id = configure(hub, legacy.base_url, timezone="UTC", sample_rate=0.0)

        assert origin(api, tokens, first)[0].status_code == 200
        assert not list(hub.redis.scan_iter(match=f"{service.STASH_PREFIX}*"))
        # Sampled again, a later lookup is compared; the earlier one never was.
        service.configure_parallel_run(db_session=hub.database.session,
                                       tenant_id=tenant_id(hub), lookup="container_origin",
                                       actor="test", sample_rate=1.0)
        origin(api, tokens, second)
        assert compared(hub, run_id, 1)["comparisons"] == 1
    assert legacy.paths == [f"/legacy/v1/containers/{second}/origin"]


def test_a_cached_answer_is_not_compared_and_cache_warming_never_is(
        api, tokens, hub, demo_inventory, celery_worker):
    run_id = configure(hub, demo_legacy_url(demo_inventory))
    container_id = dispensed_containers(demo_inventory, 1, offset=9)[0]

    first, _ = origin(api, tokens, container_id)
    second, _ = origin(api, tokens, container_id)

    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    compared(hub, run_id, 1)
    assert not list(hub.redis.scan_iter(match=f"{service.STASH_PREFIX}*"))
    assert counts(hub, run_id)["comparisons"] == 1


# --- PHI -----------------------------------------------------------------------------------

def test_stored_differences_redis_and_logs_hold_no_phi(api, tokens, hub, demo_inventory,
                                                       celery_worker, seeded_identifiers,
                                                       caplog):
    run_id = configure(hub, demo_legacy_url(demo_inventory))
    for container_id in dispensed_containers(demo_inventory, 3, offset=10):
        origin(api, tokens, container_id)
    compared(hub, run_id, 3)

    with hub.database.new_session() as reader:
        rows = list(reader.scalars(select(ParallelRunDifference)))
    disclosed = disclosed_paths("container_origin", "administration")
    stored = "\n".join(f"{row.path} {row.field} {row.kind} {row.hub_value} {row.legacy_value}"
                       for row in rows)
    assert rows and leaks_in(stored, seeded_identifiers) == []
    for row in rows:
        for value in (row.hub_value, row.legacy_value):
            assert value is None or (row.field in disclosed and reportable_value(value))
    assert leaks_in(redis_dump(hub.redis), seeded_identifiers) == []
    assert leaks_in(celery_worker.log_text(), seeded_identifiers) == []
    assert leaks_in(caplog.text, seeded_identifiers) == []
    assert leaks_in(str(report(api, tokens, run_id)), seeded_identifiers) == []


# --- the admin API, the CLI and /metrics ---------------------------------------------------

def test_an_operator_lists_its_tenants_runs_never_another_tenants(api, tokens, hub,
                                                                   demo_inventory):
    north = configure(hub, demo_legacy_url(demo_inventory))
    river = configure(hub, demo_legacy_url(demo_inventory, "river-valley"), slug="river-valley")

    listed = api.get("/v1/admin/parallel-runs", headers=tokens.headers(OPERATOR))

    assert listed.status_code == 200
    assert [item["id"] for item in listed.json["items"]] == [north]
    item = listed.json["items"][0]
    assert (item["tenant"], item["lookup"], item["enabled"], item["sample_rate"]) == \
        (NORTH, "container_origin", True, 1.0)
    assert item["counts"] == {"comparisons": 0, "matches": 0, "mismatches": 0,
                              "legacy_errors": 0}
    assert_problem(api.get(f"/v1/admin/parallel-runs/{river}",
                           headers=tokens.headers(OPERATOR)), 404)
    assert_problem(api.patch(f"/v1/admin/parallel-runs/{river}", json={"enabled": False},
                             headers=tokens.headers(OPERATOR)), 404)
    assert_problem(api.get("/v1/admin/parallel-runs/not-an-id",
                           headers=tokens.headers(OPERATOR)), 404)
    assert report(api, tokens, river, OTHER_OPERATOR)["tenant"] == "river-valley"


@pytest.mark.parametrize("method, path, body", [
    ("get", "/v1/admin/parallel-runs", None),
    ("get", "/v1/admin/parallel-runs/{id}", None),
    ("patch", "/v1/admin/parallel-runs/{id}", {"enabled": False}),
])
def test_parallel_runs_need_the_admin_scope(api, tokens, hub, demo_inventory, method, path,
                                            body):
    run_id = configure(hub, demo_legacy_url(demo_inventory))
    send = getattr(api, method)

    assert send(path.format(id=run_id), json=body).status_code == 401
    assert_problem(send(path.format(id=run_id), json=body, headers=tokens.headers(EMAR)), 403,
                   "insufficient-scope")
    assert counts(hub, run_id)["comparisons"] == 0
    assert report(api, tokens, run_id)["enabled"] is True


def test_an_admin_changes_the_sampling_and_switches_a_run_off(api, tokens, hub,
                                                              demo_inventory):
    run_id = configure(hub, demo_legacy_url(demo_inventory))

    changed = api.patch(f"/v1/admin/parallel-runs/{run_id}",
                        json={"sample_rate": 0.25, "enabled": False},
                        headers=tokens.headers(OPERATOR))

    assert changed.status_code == 200, changed.json
    assert (changed.json["sample_rate"], changed.json["enabled"]) == (0.25, False)
    assert changed.json["updated_by"].startswith("client:")


@pytest.mark.parametrize("body", [
    {"sample_rate": 1.5}, {"sample_rate": -0.1}, {"sample_rate": "all"}, {"enabled": "maybe"},
    {}, {"legacy_base_url": "http://10.0.0.1/"}, {"legacy_credential_ref": "env:HUB_SECRET_KEY"},
])
def test_a_bad_change_is_refused_with_422_and_changes_nothing(api, tokens, hub, demo_inventory,
                                                              body):
    run_id = configure(hub, demo_legacy_url(demo_inventory))

    refused = api.patch(f"/v1/admin/parallel-runs/{run_id}", json=body,
                        headers=tokens.headers(OPERATOR))

    assert_problem(refused, 422)
    shown = report(api, tokens, run_id)
    assert (shown["sample_rate"], shown["enabled"]) == (1.0, True)
    assert shown["legacy_base_url"] == demo_legacy_url(demo_inventory)


def test_operators_configure_and_read_runs_with_the_cli(hub_app, hub, demo_inventory):
    run = hub_cli(hub_app, "parallel-runs")
    credential = inventory_credential_ref(hub)

    made = run("set", NORTH, "container_origin", "--legacy-url", demo_legacy_url(demo_inventory),
               "--credential-ref", credential, "--timezone", NORTH_ZONE, "--sample-rate", "0.5")
    listed = run("list", "--tenant", NORTH)
    shown = run("show", NORTH, "container_origin")

    assert made.exit_code == 0, made.output
    assert "sample rate 0.5, enabled" in made.output
    assert "container_origin" in listed.output and "sample 0.5" in listed.output
    assert '"legacy_timezone": "America/New_York"' in shown.output
    for bad in (["--legacy-url", "ftp://legacy"], ["--timezone", "Mars/Olympus"],
                ["--sample-rate", "2"], ["--credential-ref", "plain-secret"]):
        refused = run("set", NORTH, "container_origin", *bad)
        assert refused.exit_code != 0 and "invalid" in refused.output, bad
    new_lookup = run("set", NORTH, "administrations", "--legacy-url", "http://legacy.example",
                     "--credential-ref", credential)
    assert new_lookup.exit_code != 0 and "lookup" in new_lookup.output
    assert run("show", NORTH, "inventory").exit_code != 0


def test_comparisons_are_counted_on_metrics_by_lookup_and_outcome(
        api, tokens, hub, demo_inventory, celery_worker):
    run_id = configure(hub, demo_legacy_url(demo_inventory))
    origin(api, tokens, dispensed_containers(demo_inventory, 1, offset=13)[0])
    compared(hub, run_id, 1)

    user, _, password = hub.settings.hub_metrics_basic_auth.partition(":")
    scraped = api.get("/metrics", auth=(user, password)).get_data(as_text=True)

    samples = {frozenset(sample.labels.items()): sample.value
               for family in text_string_to_metric_families(scraped)
               for sample in family.samples
               if sample.name == "hub_parallel_run_comparisons_total"}
    assert samples[frozenset({"lookup": "container_origin", "outcome": "mismatch"}.items())] == 1
    assert samples[frozenset({"lookup": "container_origin", "outcome": "match"}.items())] == 0


# --- the local stack -----------------------------------------------------------------------

def test_the_local_stack_runs_each_demo_sites_container_origins_against_the_legacy_api(
        api, tokens, hub, hub_settings, demo_data_dir, demo_inventory, celery_worker):
    from devstack.demo_tenants import configure_demo_parallel_runs

    def configure_demo() -> list[str]:
        return configure_demo_parallel_runs(
            db_session=hub.database.session, manifest_path=demo_data_dir / "manifest.json",
            inventory_url=demo_inventory.base_url, secrets_dir=hub_settings.hub_secrets_dir)

    created = configure_demo()

    runs = {view["tenant"]: view for view in service.list_parallel_runs(
        db_session=hub.database.session, tenant_id=None)}
    assert len(created) == len(runs) >= 2 and "lakeside-clinic" not in runs
    north = runs[NORTH]
    assert north["legacy_base_url"] == demo_legacy_url(demo_inventory)
    assert (north["legacy_timezone"], north["sample_rate"]) == (NORTH_ZONE, 1.0)
    # Started again, the stack keeps what operators changed.
    service.change_parallel_run(db_session=hub.database.session, run_id=north["id"],
                                tenant_id=None, actor="test", sample_rate=0.5)
    assert configure_demo() == []
    assert report(api, tokens, north["id"])["sample_rate"] == 0.5
    service.change_parallel_run(db_session=hub.database.session, run_id=north["id"],
                                tenant_id=None, actor="test", sample_rate=1.0)
    origin(api, tokens, dispensed_containers(demo_inventory, 1, offset=15)[0])
    assert compared(hub, north["id"], 1)["mismatches"] == 1


# --- the inventory lookup ------------------------------------------------------------------

def test_the_first_inventory_page_is_compared_item_by_item_and_later_pages_never(
        api, tokens, hub, demo_inventory, celery_worker):
    view = service.configure_parallel_run(
        db_session=hub.database.session, tenant_id=tenant_id(hub), lookup="inventory",
        actor="test", legacy_base_url=demo_legacy_url(demo_inventory),
        legacy_credential_ref=inventory_credential_ref(hub), legacy_timezone=NORTH_ZONE)

    first = api.get("/v1/inventory", query_string={"unit": "ICU-3", "page_size": 4},
                    headers=tokens.headers(EMAR))
    later = api.get("/v1/inventory", query_string={"unit": "ICU-3", "page_size": 4,
                                                   "cursor": first.json["next_cursor"]},
                    headers=tokens.headers(EMAR))

    assert first.status_code == later.status_code == 200
    assert compared(hub, view["id"], 1)["mismatches"] == 1
    shown = report(api, tokens, view["id"])
    # The lower-case lots are the only difference; the hub's cursor is not compared.
    assert shown["top_fields"] == [{"field": "items[].lot", "kind": "changed", "count": 4}]
    lots = {item["path"]: (item["hub_value"], item["legacy_value"])
            for item in shown["recent_differences"]}
    assert lots == {f"items[{index}].lot": (item["lot"], item["lot"].lower())
                    for index, item in enumerate(first.json["items"])}
    assert not list(hub.redis.scan_iter(match=f"{service.STASH_PREFIX}*"))
    assert counts(hub, view["id"])["comparisons"] == 1


# --- the comparison's bookkeeping ----------------------------------------------------------

def test_a_comparison_is_taken_once_and_only_the_newest_differences_are_kept(
        api, tokens, hub, hub_settings, demo_inventory):
    from dataclasses import replace

    container_id = dispensed_containers(demo_inventory, 1, offset=16)[0]
    live, _ = origin(api, tokens, container_id)
    forget_cached_lookups(hub)
    keep_three = replace(hub_settings, hub_parallel_run_differences_kept=3)
    with legacy_endpoint() as legacy:
        document = legacy_document(live.json)
        legacy.document = {**document, "lot_no": "other", "moves": document["moves"][:1]}
        run_id = configure(hub, legacy.base_url, timezone="UTC")
        outcomes = []
        for _ in range(3):
            # Kept as the request path keeps it, compared here instead of by a worker.
            comparison_id = uuid.uuid4().hex
            hub.redis.set(service.STASH_PREFIX + comparison_id, json.dumps(
                {"run_id": run_id, "lookup": "container_origin",
                 "params": {"container_id": container_id}, "consumer": "administration",
                 "hub": live.json}), ex=60)
            outcomes.append(service.compare(db_session=hub.database.session,
                                            redis_client=hub.redis, settings=keep_three,
                                            comparison_id=comparison_id))
        # A redelivered task finds its comparison taken: nothing is counted twice.
        outcomes.append(service.compare(db_session=hub.database.session, redis_client=hub.redis,
                                        settings=keep_three, comparison_id=comparison_id))

    assert outcomes == ["mismatch", "mismatch", "mismatch", "expired"]
    assert counts(hub, run_id)["mismatches"] == 3
    with hub.database.new_session() as reader:
        kept = list(reader.scalars(select(ParallelRunDifference).order_by(
            ParallelRunDifference.compared_at, ParallelRunDifference.path)))
    # Each comparison found three differences (lot, movements[1], movements[2]); the newest
    # three rows are the last comparison's.
    assert len(kept) == 3 and {row.comparison_id.hex for row in kept} == {comparison_id}
    assert {row.path for row in kept} == {"lot", "movements[1]", "movements[2]"}
