"""Webhook delivery through the real worker to a real receiver: signed per Standard Webhooks
(checked with the ``standardwebhooks`` verifier), retried with one stable webhook-id,
dead-lettered and replayed, paused after repeated failures, never redirected, refused at
delivery when the host turns out to be loopback, and cut down per subscriber at delivery time
(scopes, PHI policy, entitlement)."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from app.events.models import Delivery, Event
from tests.fixtures.cli import hub_cli
from tests.fixtures.factories import canonical_administration
from tests.fixtures.phi import leaks_in
from tests.fixtures.processes import wait_until
from tests.fixtures.webhooks import (
    OCCURRED_AT,
    publish_and_notify,
    running_receiver,
    subscribe,
)

pytestmark = pytest.mark.usefixtures("celery_worker")

FIXED_PHI = ("MRN48213377", "Maribel", "1957-06-14", "Patient reported pain", "RN20481")


def _history(api, headers, subscription_id, **query) -> list[dict]:
    response = api.get(f"/v1/subscriptions/{subscription_id}/deliveries", headers=headers,
                       query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json["items"]


def _settled(api, headers, subscription_id, statuses, timeout=30) -> dict:
    """The subscription's only delivery once its status is one of ``statuses``."""
    found: dict = {}

    def settled() -> bool:
        items = _history(api, headers, subscription_id)
        if items and items[0]["status"] in statuses:
            found.update(items[0])
            return True
        return False

    wait_until(settled, timeout=timeout, interval=0.1, description=f"delivery {statuses}")
    return found


def test_delivery_is_signed_and_verified_by_the_standardwebhooks_verifier(
        api, event_tenant, webhook_receiver):
    _client, headers = event_tenant.client()
    subscription = subscribe(api, headers, webhook_receiver.url)
    event_id = publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                                  record=canonical_administration())
    delivery = _settled(api, headers, subscription["id"], {"delivered"})
    (received,) = webhook_receiver.received()
    payload = Webhook(subscription["secret"]).verify(received.body, received.headers)
    assert received.headers["webhook-id"] == delivery["webhook_id"]
    assert payload["type"] == "administration.recorded"
    assert payload["data"]["event_id"] == event_id
    resource = payload["data"]["resource"]
    assert resource["patient"]["ref"].startswith("pt_") and resource["unit"] == "ICU-3"
    assert leaks_in(received.body.decode(), set(FIXED_PHI)) == []
    assert (delivery["payload"], delivery["attempts"], delivery["last_status_code"]) == (
        "full", 1, 204)


def test_a_signature_made_with_another_secret_does_not_verify(api, event_tenant,
                                                              webhook_receiver):
    _client, headers = event_tenant.client()
    subscribe(api, headers, webhook_receiver.url)
    other = subscribe(api, headers, webhook_receiver.url, payload="notification")
    publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                       record=canonical_administration())
    wait_until(lambda: webhook_receiver.count() == 2, timeout=30, description="two deliveries")
    verified = 0
    for received in webhook_receiver.received():
        try:
            Webhook(other["secret"]).verify(received.body, received.headers)
            verified += 1
        except Exception:  # noqa: BLE001 - the verifier's error for a wrong signature
            pass
    assert verified == 1


def test_a_failing_receiver_is_retried_with_the_same_webhook_id_until_it_succeeds(
        api, event_tenant):
    _client, headers = event_tenant.client()
    with running_receiver(fail_first=2) as receiver:
        subscription = subscribe(api, headers, receiver.url)
        publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                           record=canonical_administration())
        delivery = _settled(api, headers, subscription["id"], {"delivered"})
        received = receiver.received()
    assert len(received) == 3 and delivery["attempts"] == 3
    assert {request.headers["webhook-id"] for request in received} == {delivery["webhook_id"]}
    for request in received:  # each attempt is signed afresh, and each verifies
        Webhook(subscription["secret"]).verify(request.body, request.headers)


def test_an_exhausted_retry_horizon_dead_letters_and_a_replay_delivers_the_same_webhook_id(
        api, event_tenant):
    _client, headers = event_tenant.client()
    with running_receiver(status=500) as receiver:
        subscription = subscribe(api, headers, receiver.url)
        publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                           record=canonical_administration())
        dead = _settled(api, headers, subscription["id"], {"dead_lettered"})
        assert dead["attempts"] >= 2 and dead["last_error"] == "The receiver answered HTTP 500."
        assert [item["id"] for item in _history(api, headers, subscription["id"],
                                                status="dead_lettered")] == [dead["id"]]
        failed_attempts = receiver.count()
        receiver.status = 204
        replay = api.post(f"/v1/subscriptions/{subscription['id']}/deliveries/{dead['id']}"
                          "/replay", headers=headers)
        assert replay.status_code == 202, replay.get_data(as_text=True)
        delivered = _settled(api, headers, subscription["id"], {"delivered"})
        received = receiver.received()
    assert len(received) == failed_attempts + 1
    assert {request.headers["webhook-id"] for request in received} == {dead["webhook_id"]}
    assert delivered["replayed_at"] is not None
    again = api.post(f"/v1/subscriptions/{subscription['id']}/deliveries/{dead['id']}/replay",
                     headers=headers)
    assert again.status_code == 409
    assert again.json["type"].endswith("/delivery-not-replayable")


def test_a_subscription_that_keeps_failing_is_paused_with_a_reason_and_can_be_resumed(
        api, event_tenant):
    _client, headers = event_tenant.client()
    with running_receiver(status=503) as receiver:
        subscription = subscribe(api, headers, receiver.url)
        for number in range(4):
            publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                               record=canonical_administration(
                                   administration_id=f"NGH-A00000900{number}"))
        url = f"/v1/subscriptions/{subscription['id']}"
        wait_until(lambda: api.get(url, headers=headers).json["status"] == "paused",
                   timeout=40, interval=0.2, description="subscription paused")
        paused = api.get(url, headers=headers).json
        assert paused["consecutive_failures"] >= 12
        assert paused["paused_reason"].startswith("Paused after ")
        assert "The receiver answered HTTP 503." in paused["paused_reason"]
        receiver.status = 204
        resumed = api.post(f"{url}/resume", headers=headers)
        assert resumed.status_code == 200
        assert (resumed.json["status"], resumed.json["paused_reason"]) == ("active", None)
        again = api.post(f"{url}/resume", headers=headers)
        assert again.status_code == 409
        # Deliveries held while paused (not yet dead-lettered) are sent after the resume.
        wait_until(lambda: api.get(url, headers=headers).json["pending"] == 0, timeout=30,
                   interval=0.2, description="held deliveries settled")


def test_a_redirect_is_a_failed_delivery_and_is_not_followed(api, event_tenant,
                                                            webhook_receiver):
    _client, headers = event_tenant.client()
    with running_receiver(redirect_to=webhook_receiver.url) as redirecting:
        subscription = subscribe(api, headers, redirecting.url)
        publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                           record=canonical_administration())
        dead = _settled(api, headers, subscription["id"], {"dead_lettered"})
    assert dead["last_status_code"] == 302
    assert "redirects are not followed" in dead["last_error"]
    assert webhook_receiver.count() == 0


def test_a_host_that_resolves_to_loopback_at_delivery_is_refused(api, event_tenant,
                                                                 hub_app):
    """DNS rebinding: the name resolved to a public address when the subscription was made,
    and resolves to 127.0.0.1 when the worker delivers."""
    from app.events.subscriptions import create_subscription

    hub = hub_app.extensions["hub"]
    client_id, headers = event_tenant.client()
    with running_receiver(host="127.0.0.1") as loopback:
        with hub_app.app_context():
            subscription = create_subscription(
                db_session=hub.database.session, settings=hub.settings,
                tenant_id=str(event_tenant.tenant_id), client_id=client_id,
                url=f"http://localhost:{loopback.port}/hooks",
                event_types=["administration.recorded"],
                resolver=lambda _host, _port: ["93.184.216.34"])
        publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                           record=canonical_administration())
        dead = _settled(api, headers, subscription["id"], {"dead_lettered"})
        assert loopback.count() == 0
    assert dead["last_status_code"] is None
    assert "loopback" in dead["last_error"]


def _delivered_payload(api, headers, receiver, subscription) -> dict:
    _settled(api, headers, subscription["id"], {"delivered"})
    (received,) = receiver.received()
    return Webhook(subscription["secret"]).verify(received.body, received.headers)


def test_a_notification_subscriber_gets_ids_only(api, event_tenant, webhook_receiver):
    _client, headers = event_tenant.client()
    subscription = subscribe(api, headers, webhook_receiver.url, payload="notification")
    event_id = publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                                  record=canonical_administration())
    payload = _delivered_payload(api, headers, webhook_receiver, subscription)
    assert payload["data"] == {"event_id": event_id, "resource_type": "administration",
                               "resource_id": "NGH-A000004711"}
    assert set(payload) == {"type", "timestamp", "data"}


def test_a_subscriber_without_the_read_scope_gets_the_notification_only(
        api, event_tenant, webhook_receiver):
    _client, headers = event_tenant.client(scopes=("events:subscribe",))
    subscription = subscribe(api, headers, webhook_receiver.url, payload="full")
    publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                       record=canonical_administration())
    payload = _delivered_payload(api, headers, webhook_receiver, subscription)
    assert "resource" not in payload["data"]
    assert _history(api, headers, subscription["id"])[0]["payload"] == "notification"


def test_a_consumer_without_a_phi_policy_for_the_resource_gets_the_notification_only(
        api, event_tenant, webhook_receiver):
    # System B itself (the administration product) reads no administrations back.
    _client, headers = event_tenant.client(product="administration")
    subscription = subscribe(api, headers, webhook_receiver.url, payload="full")
    publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                       record=canonical_administration())
    payload = _delivered_payload(api, headers, webhook_receiver, subscription)
    assert "resource" not in payload["data"]


def test_an_entitlement_revoked_between_event_and_delivery_stops_the_delivery(
        api, event_tenant, webhook_receiver, hub_app):
    from app.events.service import notify_published, publish

    _client, headers = event_tenant.client()
    subscription = subscribe(api, headers, webhook_receiver.url)
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        event = publish(db_session=session, settings=hub.settings,
                        tenant_id=event_tenant.tenant_id, event_type="administration.recorded",
                        product="administration", resource=canonical_administration(),
                        occurred_at=canonical_administration()["administered_at"])
        session.commit()
        event_id = event.id
    event_tenant.revoke("administration")
    notify_published([event_id])
    refused = _settled(api, headers, subscription["id"], {"refused"})
    assert refused["last_error"] == "This tenant is not entitled to the administration product."
    assert refused["attempts"] == 0 and webhook_receiver.count() == 0


def test_a_subscriber_client_disabled_after_the_event_gets_nothing(api, event_tenant,
                                                                  webhook_receiver, hub_app):
    from app.clients.service import disable_client, get_client
    from app.events.service import notify_published, publish

    client_id, headers = event_tenant.client()
    _other, reader_headers = event_tenant.client()
    subscription = subscribe(api, headers, webhook_receiver.url)
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        event = publish(db_session=session, settings=hub.settings,
                        tenant_id=event_tenant.tenant_id, event_type="administration.recorded",
                        product="administration", resource=canonical_administration(),
                        occurred_at=OCCURRED_AT)
        session.commit()
        event_id = event.id
        disable_client(db_session=session, client=get_client(db_session=session,
                                                             client_id=client_id))
        session.commit()
    notify_published([event_id])
    refused = _settled(api, reader_headers, subscription["id"], {"refused"})
    assert refused["last_error"] == "The client that made this request has been disabled."
    assert webhook_receiver.count() == 0

def test_seeded_phi_is_in_no_event_row_delivery_history_worker_log_or_payload(
        api, event_tenant, webhook_receiver, hub_app, celery_worker, demo_administration,
        seeded_identifiers):
    phi = demo_administration.admin.export_phi()
    patient = phi["patients"][0]
    record = canonical_administration(
        administration_id="NGH-A000777001",
        patient={"mrn": patient["mrn"], "name": patient["full_name"],
                 "birth_date": patient["birth_date"]}, note=phi["notes"][0])
    _client, headers = event_tenant.client()
    subscription = subscribe(api, headers, webhook_receiver.url)
    event_id = publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                                  record=record)
    _settled(api, headers, subscription["id"], {"delivered"})
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        stored = session.get(Event, uuid.UUID(event_id))
        rows = session.scalars(select(Delivery).where(Delivery.event_id == stored.id)).all()
        sinks = [json.dumps(stored.payload), *(json.dumps(vars(row), default=str)
                                               for row in rows)]
    sinks += [json.dumps(_history(api, headers, subscription["id"])),
              json.dumps(api.get(f"/v1/subscriptions/{subscription['id']}",
                                 headers=headers).json),
              webhook_receiver.received()[0].body.decode(), celery_worker.log_text()]
    for sink in sinks:
        assert leaks_in(sink, seeded_identifiers) == []


def test_the_demo_subscriber_verifies_what_the_hub_delivers(api, event_tenant, tmp_path):
    from werkzeug.serving import make_server

    from demo_systems.subscriber import create_app as subscriber_app

    secrets_file = tmp_path / "subscriber.json"
    server = make_server("127.0.0.2", 0, subscriber_app(secrets_file), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _client, headers = event_tenant.client()
        url = f"http://127.0.0.2:{server.server_port}/events/{event_tenant.slug}"
        subscription = subscribe(api, headers, url)
        secrets_file.write_text(json.dumps({event_tenant.slug: subscription["secret"]}))
        publish_and_notify(event_tenant.app, tenant_id=event_tenant.tenant_id,
                           record=canonical_administration())
        _settled(api, headers, subscription["id"], {"delivered"})
        stats = server.app.test_client().get("/stats").json["counts"]
    finally:
        server.shutdown()
    assert stats == [{"tenant": event_tenant.slug, "type": "administration.recorded",
                      "outcome": "full", "count": 1}]


def test_operators_list_and_replay_dead_letters_from_the_cli(api, event_tenant,
                                                             webhook_receiver, hub_app):
    from sqlalchemy import update

    from app.events.service import fan_out, publish

    _client, headers = event_tenant.client()
    subscription = subscribe(api, headers, webhook_receiver.url)
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        event = publish(db_session=session, settings=hub.settings,
                        tenant_id=event_tenant.tenant_id, event_type="administration.recorded",
                        product="administration", resource=canonical_administration(),
                        occurred_at=OCCURRED_AT)
        session.commit()
        (delivery_id,) = fan_out(db_session=session, event_id=str(event.id))
        # As a delivery whose retry horizon ran out leaves it (its task never sent here).
        session.execute(update(Delivery).where(Delivery.id == uuid.UUID(delivery_id)).values(
            status="dead_lettered", attempts=5, last_error="The receiver answered HTTP 503."))
        session.commit()
    events_cli = hub_cli(hub_app, "events")
    listed = events_cli("dead-letters", "--tenant", event_tenant.slug)
    assert delivery_id in listed.output and "HTTP 503" in listed.output
    replayed = events_cli("replay", delivery_id)
    assert replayed.exit_code == 0, replayed.output
    delivered = _settled(api, headers, subscription["id"], {"delivered"})
    assert webhook_receiver.received()[0].headers["webhook-id"] == delivered["webhook_id"]
    again = events_cli("replay", delivery_id)
    assert again.exit_code != 0 and "Only dead-lettered deliveries" in again.output
