"""System C's messages become canonical events: each stored order, dispense and administration
is published in the message's own transaction and delivered, signed and minimized, to the
tenant's subscribers; a duplicate or refused message publishes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from app.events.models import Event
from app.pharmacy.service import receive_message
from tests.fixtures.hl7 import SEEDED_PHI, ack_segments, encoded, hl7_message
from tests.fixtures.phi import leaks_in
from tests.fixtures.processes import wait_until
from tests.fixtures.webhooks import EventTenant, subscribe

pytestmark = pytest.mark.usefixtures("celery_worker")

EVENT_TYPES = ("order.placed", "dispense.recorded", "administration.recorded")


@pytest.fixture
def subscribed(api, hub_app, pharmacy_tenant, webhook_receiver):
    """The pharmacy tenant's System A client, subscribed to the pharmacy's three events."""
    tenant = EventTenant(hub_app, pharmacy_tenant.tenant_id, pharmacy_tenant.slug)
    _client, headers = tenant.client(scopes=("events:subscribe", "orders:read",
                                             "dispenses:read", "administrations:read"),
                                     product="inventory")
    subscription = subscribe(api, headers, webhook_receiver.url, event_types=EVENT_TYPES)
    return subscription


def receive(hub_app, message: str) -> str:
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        ack = receive_message(db_session=hub.database.session, settings=hub.settings,
                              raw=encoded(message), transport="mllp")
    return ack_segments(ack)["MSA"][1]


def events_of(hub_app, tenant_id) -> list[Event]:
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        session.expire_all()
        return list(session.scalars(select(Event).where(Event.tenant_id == tenant_id)
                                    .order_by(Event.recorded_at)))


def test_each_stored_message_is_published_and_delivered_signed_and_minimized(
        hub_app, pharmacy_tenant, subscribed, webhook_receiver):
    sender = pharmacy_tenant.sender
    codes = [receive(hub_app, hl7_message(kind, sender=sender, order=f"RX-EV-{number}"))
             for number, kind in enumerate(("RDE^O11", "RDS^O13", "RAS^O17"))]

    assert codes == ["AA", "AA", "AA"]
    events = events_of(hub_app, pharmacy_tenant.tenant_id)
    assert [event.type for event in events] == list(EVENT_TYPES)
    assert {event.product for event in events} == {"pharmacy"}
    wait_until(lambda: webhook_receiver.count() == 3, timeout=60,
               description="three deliveries")
    received = webhook_receiver.received()
    payloads = [Webhook(subscribed["secret"]).verify(item.body, item.headers)
                for item in received]
    by_type = {payload["type"]: payload["data"]["resource"] for payload in payloads}
    assert set(by_type) == set(EVENT_TYPES)
    assert by_type["dispense.recorded"]["medication"]["ndc11"] == "00409488802"
    assert by_type["dispense.recorded"]["patient"]["ref"].startswith("pt_")
    assert by_type["order.placed"]["order_number"] == "RX-EV-0"
    stored = " ".join(str(event.payload) for event in events)
    delivered = " ".join(item.body.decode() for item in received)
    assert leaks_in(stored + delivered, set(SEEDED_PHI)) == []


def test_a_duplicate_or_refused_message_publishes_nothing(hub_app, pharmacy_tenant, subscribed):
    message = hl7_message("RDS^O13", sender=pharmacy_tenant.sender, control_id="DUP-EVENT-1")

    first, again = receive(hub_app, message), receive(hub_app, message)
    refused = receive(hub_app, hl7_message("RDS^O13", sender=pharmacy_tenant.sender,
                                           ndc="not-an-ndc"))

    assert (first, again, refused) == ("AA", "AA", "AE")
    assert [event.type for event in events_of(hub_app, pharmacy_tenant.tenant_id)] == \
        ["dispense.recorded"]
