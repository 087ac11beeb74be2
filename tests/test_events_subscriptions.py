"""``/v1/subscriptions``: create (secret shown once), list, read, delete, tenant isolation,
bad input refused with field errors and nothing stored, the SSRF guard at creation, paging."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from app.events.models import Subscription
from app.events.service import fan_out, publish
from tests.fixtures.factories import canonical_administration, tenant_row
from tests.fixtures.problems import assert_problem, problem_fields
from tests.fixtures.services import hub_app_with
from tests.fixtures.webhooks import OCCURRED_AT, EventTenant, subscribe

RECEIVER = "http://127.0.0.2:9/hooks"


def _count(app, tenant_id) -> int:
    hub = app.extensions["hub"]
    with app.app_context():
        return hub.database.session.scalar(select(func.count()).select_from(Subscription).where(
            Subscription.tenant_id == tenant_id))


def test_a_subscription_is_created_with_its_secret_shown_once(api, event_tenant):
    client_id, headers = event_tenant.client()
    created = subscribe(api, headers, RECEIVER, event_types=["administration.recorded",
                                                             "container.moved"],
                        filter={"unit": "icu3", "medication": "95218-0364-82"})
    assert created["secret"].startswith("whsec_")
    assert (created["status"], created["payload"], created["created_by"]) == (
        "active", "full", f"client:{client_id}")
    assert created["filter"] == {"unit": "ICU-3", "medication": "95218036482"}
    shown = api.get(f"/v1/subscriptions/{created['id']}", headers=headers)
    listed = api.get("/v1/subscriptions", headers=headers)
    assert shown.status_code == 200 and "secret" not in shown.json
    assert [item["id"] for item in listed.json["items"]] == [created["id"]]
    assert created["secret"] not in json.dumps(listed.json)


def test_the_secret_is_not_stored_in_the_subscriptions_row(api, event_tenant, hub_app):
    _client, headers = event_tenant.client()
    created = subscribe(api, headers, RECEIVER)
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        row = hub.database.session.get(Subscription, uuid.UUID(created["id"]))
        assert created["secret"] not in json.dumps(
            {key: str(value) for key, value in vars(row).items()})


def test_a_deleted_subscription_is_gone(api, event_tenant):
    _client, headers = event_tenant.client()
    created = subscribe(api, headers, RECEIVER)
    assert api.delete(f"/v1/subscriptions/{created['id']}", headers=headers).status_code == 204
    assert_problem(api.get(f"/v1/subscriptions/{created['id']}", headers=headers), 404)
    assert_problem(api.delete(f"/v1/subscriptions/{created['id']}", headers=headers), 404)


def test_another_tenants_subscription_is_404_everywhere(api, event_tenant, hub_app):
    _client, headers = event_tenant.client()
    created = subscribe(api, headers, RECEIVER)
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        other = tenant_row(session, slug="other")
        session.commit()
        other_tenant = EventTenant(hub_app, other.id, other.slug)
    _other_client, other_headers = other_tenant.client()
    base = f"/v1/subscriptions/{created['id']}"
    for method, url in (("get", base), ("delete", base), ("post", f"{base}/resume"),
                        ("get", f"{base}/deliveries")):
        assert_problem(getattr(api, method)(url, headers=other_headers), 404)
    assert api.get("/v1/subscriptions", headers=other_headers).json["items"] == []
    assert api.get(base, headers=headers).status_code == 200


def test_a_malformed_subscription_id_is_404(api, event_tenant):
    _client, headers = event_tenant.client()
    assert_problem(api.get("/v1/subscriptions/not-an-id", headers=headers), 404)


@pytest.mark.parametrize(("body", "field"), [
    ({"event_types": ["administration.recorded"]}, "url"),
    ({"url": RECEIVER}, "event_types"),
    ({"url": RECEIVER, "event_types": []}, "event_types"),
    ({"url": RECEIVER, "event_types": ["patient.admitted"]}, "event_types"),
    ({"url": RECEIVER, "event_types": ["order.placed"], "payload": "everything"}, "payload"),
    ({"url": RECEIVER, "event_types": ["order.placed"], "filter": {"unit": "icu 3!"}},
     "filter"),
    ({"url": RECEIVER, "event_types": ["order.placed"], "filter": {"medication": "123"}},
     "filter"),
    ({"url": RECEIVER, "event_types": ["order.placed"], "filter": {"ward": "ICU-3"}},
     "filter"),
    ({"url": RECEIVER, "event_types": ["order.placed"], "secret": "whsec_mine"}, "secret"),
    ({"url": "x" * 2001, "event_types": ["order.placed"]}, "url"),
])
def test_bad_input_is_422_with_field_errors_and_nothing_is_stored(api, event_tenant, body,
                                                                  field):
    _client, headers = event_tenant.client()
    response = api.post("/v1/subscriptions", headers=headers, json=body)
    assert_problem(response, 422)
    assert field in problem_fields(response, "json")
    assert _count(event_tenant.app, event_tenant.tenant_id) == 0


@pytest.mark.parametrize("url", [
    "http://localhost:8080/hooks", "http://127.0.0.1/hooks", "http://[::1]/hooks",
    "http://2130706433/", "http://169.254.169.254/latest/meta-data",
    "http://[fd00:ec2::254]/", "http://10.0.0.8/hooks", "ftp://127.0.0.2/hooks",
    "http://user:secret@127.0.0.2/hooks", "http://no-such-host.invalid/hooks"])
def test_urls_the_ssrf_guard_refuses_are_422_and_nothing_is_stored(api, event_tenant, url):
    _client, headers = event_tenant.client()
    response = api.post("/v1/subscriptions", headers=headers,
                        json={"url": url, "event_types": ["administration.recorded"]})
    assert_problem(response, 422)
    assert problem_fields(response, "json")["url"]
    assert _count(event_tenant.app, event_tenant.tenant_id) == 0


def test_plain_http_is_refused_where_the_setting_does_not_allow_it(hub_settings,
                                                                   migrated_database,
                                                                   event_tenant):
    strict = hub_app_with(hub_settings, hub_webhook_allow_http=False)
    _client, headers = event_tenant.client()
    response = strict.test_client().post(
        "/v1/subscriptions", headers=headers,
        json={"url": RECEIVER, "event_types": ["administration.recorded"]})
    assert_problem(response, 422)
    assert problem_fields(response, "json")["url"] == ["Webhook URLs must use https."]


def test_the_subscriptions_api_needs_the_events_subscribe_scope(api, event_tenant):
    _client, headers = event_tenant.client(scopes=("administrations:read",))
    assert_problem(api.get("/v1/subscriptions", headers=headers), 403)
    assert_problem(api.post("/v1/subscriptions", headers=headers,
                            json={"url": RECEIVER, "event_types": ["order.placed"]}), 403)


def test_resuming_an_active_subscription_is_409(api, event_tenant):
    _client, headers = event_tenant.client()
    created = subscribe(api, headers, RECEIVER)
    assert_problem(api.post(f"/v1/subscriptions/{created['id']}/resume", headers=headers), 409,
                   "subscription-not-paused")


def test_delivery_history_is_paged_with_signed_cursors(api, event_tenant):
    _client, headers = event_tenant.client()
    created = subscribe(api, headers, RECEIVER)
    hub = event_tenant.app.extensions["hub"]
    with event_tenant.app.app_context():
        session = hub.database.session
        for number in range(3):
            event = publish(db_session=session, settings=hub.settings,
                            tenant_id=event_tenant.tenant_id,
                            event_type="administration.recorded", product="administration",
                            resource=canonical_administration(
                                administration_id=f"NGH-A00000800{number}"),
                            occurred_at=OCCURRED_AT)
            session.commit()
            fan_out(db_session=session, event_id=str(event.id))  # made, not sent
    url = f"/v1/subscriptions/{created['id']}/deliveries"
    first = api.get(url, headers=headers, query_string={"page_size": 2}).json
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = api.get(url, headers=headers, query_string={"page_size": 2,
                                                         "cursor": first["next_cursor"]}).json
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    ids = [item["id"] for item in first["items"] + second["items"]]
    assert len(set(ids)) == 3
    tampered = api.get(url, headers=headers, query_string={
        "page_size": 2, "cursor": first["next_cursor"], "status": "delivered"})
    assert_problem(tampered, 422)
    assert "cursor" in problem_fields(tampered, "query")
