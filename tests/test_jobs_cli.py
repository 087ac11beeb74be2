"""``flask hub dead-letters list|replay``: an operator finds a unit that exhausted its retries
against a failing hospital system, and replays it once the system is back."""

from __future__ import annotations

import uuid

import pytest

from tests.fixtures.cli import hub_cli
from tests.fixtures.jobs import OPERATOR, finished, full_window, job_in_status, submit, warm_unit_catalogue
from tests.fixtures.phi import leaks_in

pytestmark = pytest.mark.usefixtures("clean_lookup_state", "celery_worker")


@pytest.fixture
def cli(hub_app):
    return hub_cli(hub_app, "dead-letters")


def _line_of(output: str, job_id: str) -> str:
    lines = [line for line in output.splitlines() if job_id in line]
    assert len(lines) == 1, output
    return lines[0]


def test_list_then_replay_a_dead_letter_from_the_cli(
        cli, api, tokens, truth, hub_app, demo_administration, seeded_identifiers):
    warm_unit_catalogue(hub_app)  # the submission reads it; only the unit's reads will fail
    demo_administration.admin.set_faults(site="north-general", error_rate=1)
    job_id = submit(api, tokens, {"type": "administration_counts", "params": {
        "window": full_window(truth), "units": ["ED-1"]}}).json["id"]
    assert finished(api, tokens, job_id, timeout=60)["status"] == "failed"

    listed = cli("list")

    assert listed.exit_code == 0, listed.output
    line = _line_of(listed.output, job_id)
    letter_id = line.split()[0]
    assert uuid.UUID(letter_id)
    assert " open " in line and "unit ED-1 " in line and "attempts 4 " in line
    assert "hub.io.run_job_unit" in line and "DownstreamUnavailable" in line
    assert leaks_in(listed.output, seeded_identifiers) == []
    assert job_id in cli("list", "--tenant", "north-general").output
    other_tenant = cli("list", "--tenant", "river-valley")
    assert other_tenant.exit_code == 0 and job_id not in other_tenant.output

    demo_administration.admin.clear_faults()
    replayed = cli("replay", letter_id)

    assert replayed.exit_code == 0, replayed.output
    assert replayed.output.strip() == f"replaying unit ED-1 of job {job_id}"
    job = job_in_status(api, tokens, job_id, {"succeeded"}, timeout=30)
    assert job["progress"] == {"units_done": 1, "units_total": 1} and job["error"] is None
    assert job["failed_units"] == [] and job["result"]["records"] > 0
    assert job_id not in cli("list").output  # no longer open
    assert " replayed " in _line_of(cli("list", "--all").output, job_id)

    again = cli("replay", letter_id)

    assert again.exit_code == 1
    assert "already replayed" in again.output
    assert api.get(f"/v1/jobs/{job_id}", headers=tokens.headers(OPERATOR)
                   ).json["status"] == "succeeded"


@pytest.mark.parametrize("dead_letter_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_replaying_an_unknown_dead_letter_fails_clearly(cli, dead_letter_id):
    result = cli("replay", dead_letter_id)

    assert result.exit_code == 1
    assert "No such dead letter." in result.output


def test_listing_an_unknown_tenant_fails_clearly(cli):
    result = cli("list", "--tenant", "no-such-hospital")

    assert result.exit_code == 1
    assert "no tenant no-such-hospital" in result.output
