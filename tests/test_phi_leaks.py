"""The PHI-leak scan: drive every lookup path with the demo systems' seeded synthetic patients,
then search every sink for their names, MRNs, dates of birth and notes."""

from __future__ import annotations

import json
import logging

import pytest

from app.lookups.fhir import FHIR_JSON
from tests.fixtures.phi import leaks_in, redis_dump

pytestmark = pytest.mark.usefixtures("clean_lookup_state")


def drive_every_lookup(api, tokens, demo_inventory) -> list[str]:
    """Call every lookup in JSON and FHIR, paging through administrations, and a few failures;
    return every response body."""
    bodies = []
    headers = tokens.headers("north-general-inventory")
    for accept in ("application/json", FHIR_JSON):
        url = "/v1/administrations?page_size=200"
        while url:
            response = api.get(url, headers={**headers, "Accept": accept})
            assert response.status_code == 200
            bodies.append(response.get_data(as_text=True))
            cursor = response.json.get("next_cursor") if accept == "application/json" else None
            url = f"/v1/administrations?page_size=200&cursor={cursor}" if cursor else None
    emar = tokens.headers("north-general-emar")
    container = demo_inventory.get("north-general", "/containers", limit=1).json()["items"][0]
    for accept in ("application/json", FHIR_JSON):
        bodies.append(api.get(f"/v1/containers/{container['containerId']}/origin",
                              headers={**emar, "Accept": accept}).get_data(as_text=True))
        bodies.append(api.get("/v1/inventory?page_size=50",
                              headers={**emar, "Accept": accept}).get_data(as_text=True))
    # failure paths answer too, and must not echo anything either
    bodies.append(api.get("/v1/administrations?unit=%%%", headers=tokens.headers(
        "north-general-inventory")).get_data(as_text=True))
    bodies.append(api.get("/v1/administrations", headers=emar).get_data(as_text=True))
    return bodies


def test_no_seeded_identifier_reaches_responses_logs_or_redis(
        api, tokens, demo_inventory, hub_app, seeded_identifiers, caplog):
    caplog.set_level(logging.DEBUG)

    bodies = drive_every_lookup(api, tokens, demo_inventory)

    assert leaks_in("\n".join(bodies), seeded_identifiers) == []
    logged = "\n".join(json.dumps(vars(record), default=str) for record in caplog.records)
    assert caplog.records and leaks_in(logged, seeded_identifiers) == []
    assert leaks_in(redis_dump(hub_app.extensions["hub"].redis), seeded_identifiers) == []
    assert leaks_in(audit_dump(hub_app), seeded_identifiers) == []


def audit_dump(hub_app) -> str:
    """Every audit row, after writing the buffered events, as one text."""
    from sqlalchemy import select

    from app.audit.models import AuditEvent
    from app.audit.service import write_pending_events

    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        write_pending_events(redis_client=hub.redis, db_session=session)
        rows = session.scalars(select(AuditEvent)).all()
        assert rows
        return "\n".join(json.dumps({column.name: getattr(row, column.name)
                                     for column in AuditEvent.__table__.columns}, default=str)
                         for row in rows)


def test_the_scan_would_see_a_leak(seeded_identifiers):
    # The scan is only worth something if it finds what it looks for.
    some_mrn = next(identifier for identifier in seeded_identifiers
                    if identifier.startswith("MRN"))

    assert leaks_in(f"... {some_mrn} ...", seeded_identifiers) == [some_mrn]
