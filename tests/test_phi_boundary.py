"""The PHI boundary (``app/phi/boundary.py``, ``app/phi/redaction.py``): every sink — results
store, cache, task arguments, FHIR output, logs — goes through app/phi, and no PHI rule has a
copy elsewhere."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from app.cache import service as cache
from app.jobs import dispatch
from app.lookups.fhir import medication_administration
from app.observability.logs import json_handler
from app.phi.boundary import (
    PHI_FIELD_PATHS,
    UnsafeResult,
    assert_no_phi_fields,
    assert_task_arguments,
    people_for_fhir,
)
from app.phi.policy import minimize
from app.phi.pseudonyms import Pseudonymizer, tenant_pseudonym_key
from app.phi.redaction import PhiScrubFilter
from app.settings import PROJECT_ROOT
from tests.fixtures.factories import canonical_administration
from tests.fixtures.problems import assert_problem

NORTH = Pseudonymizer(tenant_pseudonym_key("test-master-key-not-a-real-secret-0123456789",
                                           "north-general"))


def _minimized(**overrides) -> dict:
    return minimize("administration", "inventory", canonical_administration(**overrides),
                    pseudonymizer=NORTH)


@pytest.fixture
def seeded_patient(demo_administration) -> dict:
    """One patient the demo eMAR was seeded with (name, MRN, birth date)."""
    return demo_administration.admin.export_phi()["patients"][0]


def _key(name: str) -> str:
    return f"customer:test:product:administration:resource:phi-boundary:{name}"


def test_the_cache_refuses_a_payload_carrying_a_seeded_patient_name(hub_app, seeded_patient):
    client = hub_app.extensions["hub"].redis
    record = _minimized()
    record["patient"]["name"] = seeded_patient["full_name"]  # as if minimization were skipped
    key = _key("refused")

    with pytest.raises(UnsafeResult, match=r"patient\.name") as refused:
        cache.write(client, key, {"items": [record]}, fresh_seconds=60, stale_seconds=60)

    assert client.get(key) is None
    assert seeded_patient["full_name"] not in str(refused.value)


@pytest.mark.parametrize("field", sorted(PHI_FIELD_PATHS))
def test_the_cache_refuses_every_raw_phi_field(hub_app, field):
    raw = canonical_administration()
    with pytest.raises(UnsafeResult):
        cache.write(hub_app.extensions["hub"].redis, _key(field), {"items": [raw]},
                    fresh_seconds=60, stale_seconds=60)


def test_the_cache_keeps_minimized_records(hub_app):
    client = hub_app.extensions["hub"].redis
    key = _key("kept")

    cache.write(client, key, {"items": [_minimized()]}, fresh_seconds=60, stale_seconds=60)

    assert cache.read(client, key, resource_type="administrations").payload["items"][0][
        "patient"]["ref"].startswith("pt_")
    client.delete(key)


def test_a_medication_name_is_not_taken_for_a_patient_name():
    assert_no_phi_fields({"medication": {"name": "Morphine sulfate"}, "units": ["ICU-1"]})


@pytest.mark.parametrize("arguments", [("MRN48213377",), ("a" * 65,), ({"patient": "x"},),
                                       ("4b1f0c9e-0000-4000-8000-000000000000", "555-123-4567")])
def test_task_arguments_other_than_ids_are_refused(arguments):
    with pytest.raises(UnsafeResult):
        assert_task_arguments(arguments)


def test_dispatch_refuses_to_send_a_task_with_phi_in_its_arguments(seeded_patient):
    with pytest.raises(UnsafeResult) as refused:
        dispatch.submit_job_pipeline(job_id=seeded_patient["mrn"])

    assert seeded_patient["mrn"] not in str(refused.value)


def test_ids_pass_as_task_arguments():
    assert_task_arguments(("4b1f0c9e-0000-4000-8000-000000000000", "ICU-3", 5, None))


def test_fhir_output_takes_only_the_pseudonyms_of_people_from_app_phi():
    record = _minimized()

    people = people_for_fhir(record)
    document = medication_administration(record, tenant="north-general").model_dump(mode="json")

    assert people == {"patient": record["patient"]["ref"], "staff": record["nurse_ref"]}
    assert document["subject"]["identifier"]["value"] == people["patient"]
    with pytest.raises(UnsafeResult, match="minimized"):
        medication_administration(canonical_administration(), tenant="north-general")


def test_every_log_line_is_redacted_by_the_phi_filter():
    assert any(isinstance(log_filter, PhiScrubFilter) for log_filter in json_handler().filters)


# Definitions that are PHI rules: each may exist in app/phi only.
PHI_RULE_DEFINITIONS = re.compile(
    r"^(?:PHI_FIELD_PATHS|PHI_FIELD_NAMES|_PHI_NAMES|PHI_PATTERNS|_RAW_\w+_FIELDS|"
    r"RESULT_FIELDS)\s*[:=]|^def (?:scrub|assert_phi_free|_refuse_unminimized)\(|"
    r"^class (?:PhiScrubFilter|UnsafeResult)\b", re.MULTILINE)


def test_phi_rules_are_defined_in_app_phi_and_nowhere_else():
    outside = []
    for folder in ("app", "tasks"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            relative = path.relative_to(PROJECT_ROOT)
            if relative.parts[:2] == ("app", "phi"):
                continue
            if PHI_RULE_DEFINITIONS.search(Path(path).read_text(encoding="utf-8")):
                outside.append(str(relative))

    assert outside == []


def test_the_audit_trail_refuses_an_event_carrying_an_identifier(hub_app, seeded_patient):
    from app.audit.records import AuditRecord
    from app.audit.service import PENDING_KEY, record_event
    from app.database import utcnow

    hub = hub_app.extensions["hub"]
    queued = hub.redis.llen(PENDING_KEY)
    record = AuditRecord(request_id="req-phi-boundary", operation="jobs.submit_job",
                         outcome="success", status_code=202, occurred_at=utcnow(),
                         client_id=seeded_patient["mrn"])

    with pytest.raises(UnsafeResult, match=r"audit\.client_id"):
        record_event(record=record, redis_client=hub.redis, database=hub.database)

    assert hub.redis.llen(PENDING_KEY) == queued


def test_error_bodies_mask_an_identifier_the_request_carried(api, tokens, seeded_patient,
                                                             clean_lookup_state):
    response = api.post("/v1/jobs", json={"type": "administration_counts", "params": {
        "window": {"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"},
        "units": [seeded_patient["mrn"]]}}, headers=tokens.headers(
        "north-general-operator", **{"Idempotency-Key": f"phi-echo-{uuid.uuid4()}"}))

    assert_problem(response, 422)
    body = response.get_data(as_text=True)
    # Neither as sent nor in any respelling (a unit code reading would give ``MRN-<digits>``).
    assert seeded_patient["mrn"] not in body and seeded_patient["mrn"][3:] not in body
