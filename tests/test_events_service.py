"""Publishing canonical events: minimized before they are stored, stored only when someone
listens, once per thing that happened, and fanned out (or swept up later) after the commit."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.clients.models import Client
from app.events import service
from app.events.models import Delivery, Event
from tests.fixtures.factories import (
    canonical_administration,
    client_row,
    subscription_row,
    tenant_row,
)

OCCURRED = datetime(2026, 11, 18, 8, 15, tzinfo=UTC)
PHI = ("MRN48213377", "Maribel", "1957-06-14", "Patient reported pain", "RN20481")


@pytest.fixture
def listening_tenant(hub_app):
    """A tenant with one operator client subscribed to administration.recorded."""
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        tenant = tenant_row(session)
        client, _secret = client_row(session, tenant=tenant, scopes=["events:subscribe"])
        subscription_row(session, tenant=tenant, client=client)
        session.commit()
        yield hub, session, tenant


def _publish(hub, session, tenant, **overrides):
    return service.publish(db_session=session, settings=hub.settings, tenant_id=tenant.id,
                           event_type="administration.recorded", product="administration",
                           resource=canonical_administration(**overrides),
                           occurred_at=OCCURRED)


def test_published_event_is_stored_minimized_with_the_patient_pseudonym(listening_tenant):
    hub, session, tenant = listening_tenant
    event = _publish(hub, session, tenant)
    session.commit()
    stored = session.get(Event, event.id)
    text = json.dumps(stored.payload)
    assert [identifier for identifier in PHI if identifier in text] == []
    assert stored.payload["patient"] == {"ref": stored.payload["patient"]["ref"]}
    assert stored.payload["patient"]["ref"].startswith("pt_")
    assert stored.payload["nurse_ref"].startswith("st_")
    assert (stored.resource_id, stored.unit, stored.ndc11) == (
        "NGH-A000004711", "ICU-3", "95218036482")
    assert stored.fanned_out_at is None


def test_publish_does_not_commit_the_callers_transaction(listening_tenant):
    hub, session, tenant = listening_tenant
    event = _publish(hub, session, tenant)
    event_id = event.id
    session.rollback()
    assert session.get(Event, event_id) is None


def test_the_same_event_published_twice_is_stored_once(listening_tenant):
    hub, session, tenant = listening_tenant
    assert _publish(hub, session, tenant) is not None
    session.commit()
    assert _publish(hub, session, tenant) is None
    assert _publish(hub, session, tenant, administration_id="NGH-A000004712") is not None
    session.commit()
    count = len(session.scalars(select(Event.id).where(Event.tenant_id == tenant.id)).all())
    assert count == 2


def test_nothing_is_stored_when_no_subscription_listens(hub_app):
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        tenant = tenant_row(session)
        session.commit()
        assert _publish(hub, session, tenant) is None


def test_an_unknown_event_type_is_a_programming_error(listening_tenant):
    hub, session, tenant = listening_tenant
    with pytest.raises(service.UnknownEventType):
        service.publish(db_session=session, settings=hub.settings, tenant_id=tenant.id,
                        event_type="patient.admitted", product="administration",
                        resource={}, occurred_at=OCCURRED)


def test_fan_out_makes_one_delivery_per_matching_subscription_once(listening_tenant):
    hub, session, tenant = listening_tenant
    client = session.scalars(select(Client).where(Client.tenant_id == tenant.id)).first()
    subscription_row(session, tenant=tenant, client=client, filter_unit="ED-1")
    session.commit()
    event = _publish(hub, session, tenant)
    session.commit()
    first = service.fan_out(db_session=session, event_id=str(event.id))
    again = service.fan_out(db_session=session, event_id=str(event.id))
    deliveries = session.scalars(select(Delivery).where(Delivery.event_id == event.id)).all()
    assert len(first) == 1 and again == [] and len(deliveries) == 1
    assert session.get(Event, event.id).fanned_out_at is not None

