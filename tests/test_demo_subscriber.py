"""The demo webhook subscriber: verifies Standard Webhooks signatures, refuses what does not
verify, counts a repeated webhook-id once, and keeps no payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from demo_systems.subscriber import create_app

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def subscriber(tmp_path):
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"north-general": SECRET}))
    return create_app(secrets_file).test_client()


def _signed(body: dict, *, message_id="msg_1", secret=SECRET) -> tuple[str, dict]:
    text = json.dumps(body)
    now = datetime.now(UTC)
    return text, {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())),
                  "webhook-signature": Webhook(secret).sign(message_id, now, text),
                  "Content-Type": "application/json"}


def _counts(subscriber) -> list[dict]:
    return subscriber.get("/stats").json["counts"]


def test_a_signed_event_is_counted_once_even_when_repeated(subscriber):
    body, headers = _signed({"type": "order.placed", "timestamp": "2026-11-18T08:15:00Z",
                             "data": {"event_id": "e1"}})
    assert subscriber.post("/events/north-general", data=body, headers=headers).status_code == 204
    assert subscriber.post("/events/north-general", data=body, headers=headers).status_code == 204
    assert _counts(subscriber) == [
        {"tenant": "north-general", "type": "order.placed", "outcome": "notification",
         "count": 1},
        {"tenant": "north-general", "type": "order.placed", "outcome": "repeat", "count": 1}]


def test_a_signature_made_with_another_secret_is_refused(subscriber):
    body, headers = _signed({"type": "order.placed", "data": {}},
                            secret="whsec_" + "A" * 32)
    assert subscriber.post("/events/north-general", data=body, headers=headers).status_code == 401
    assert _counts(subscriber)[0]["outcome"] == "bad_signature"


def test_an_unknown_tenant_is_refused(subscriber):
    body, headers = _signed({"type": "order.placed", "data": {}})
    assert subscriber.post("/events/elsewhere", data=body, headers=headers).status_code == 404
