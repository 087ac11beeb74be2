"""One jobs flow: the API, the nightly sync and the CLI submit, replay and cancel through one
service function each, which records the submitting client and sends ids-only tasks through
the app's one dispatch module."""

from __future__ import annotations

import re
import uuid

import pytest

from app.jobs.models import Job
from app.settings import PROJECT_ROOT
from tests.fixtures.jobs import OPERATOR, submit

pytestmark = pytest.mark.usefixtures("clean_lookup_state", "celery_worker")


def test_a_job_submitted_through_the_api_records_its_client(api, tokens, truth, hub_app):
    from app.clients.service import get_client

    response = submit(api, tokens, {"type": "administration_counts", "params": {
        "window": {"since": truth["administration"]["window_start"],
                   "until": truth["administration"]["window_end"]}, "units": ["ED-1"]}})

    assert response.status_code == 202, response.json
    with hub_app.app_context():
        session = hub_app.extensions["hub"].database.session
        job = session.get(Job, uuid.UUID(response.json["id"]))
        assert job.client_id == get_client(db_session=session, client_id=OPERATOR).id


def test_the_nightly_sync_submits_through_the_same_flow_without_a_client(hub_app, demo_tenants):
    from app.syncs.nightly import submit_previous_day_counts
    from app.tenants.service import get_tenant_by_slug

    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        tenant = get_tenant_by_slug(db_session=hub.database.session, slug="north-general")
        report = submit_previous_day_counts(db_session=hub.database.session, redis_client=hub.redis,
                                            settings=hub.settings, tenant=tenant)
        job = hub.database.session.get(Job, uuid.UUID(report["job_id"]))

        assert job.client_id is None and job.tenant_id == tenant.id
        assert job.type == "administration_counts"


# Who may call the dispatch module's job functions, and who may send tasks by name.
_JOB_DISPATCH = re.compile(r"\b(?:submit_job_pipeline|replay_unit|revoke_unit_tasks)\(")
_BY_NAME = re.compile(r"\bsend_task\(|signature\(\s*\"hub\.")


def test_only_the_jobs_service_dispatches_jobs_and_only_dispatch_sends_tasks_by_name():
    dispatching, naming = set(), set()
    for folder in ("app", "tasks"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            relative = str(path.relative_to(PROJECT_ROOT))
            text = path.read_text(encoding="utf-8")
            calls = [line for line in text.splitlines()
                     if _JOB_DISPATCH.search(line) and not line.lstrip().startswith("def ")]
            if calls:
                dispatching.add(relative)
            if _BY_NAME.search(text):
                naming.add(relative)

    assert dispatching <= {"app/jobs/service.py"}
    assert naming == {"app/jobs/dispatch.py"}
