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


def test_a_minute_with_events_is_summed_up_in_one_line_and_a_quiet_minute_in_none(
        tmp_path, caplog, monkeypatch):
    import threading

    from demo_systems import subscriber as module
    from tests.fixtures.processes import wait_until

    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"north-general": SECRET}))
    inbox = module.Inbox(secrets_file)
    client = create_app(secrets_file, inbox).test_client()
    for number in range(3):
        body, headers = _signed({"type": "dispense.recorded", "data": {"event_id": "e"}},
                                message_id=f"msg_{number}")
        client.post("/events/north-general", data=body, headers=headers)
    monkeypatch.setattr(module, "SUMMARY_SECONDS", 0.05)
    caplog.set_level("INFO", logger="demo_systems.subscriber")
    stop = threading.Event()
    summaries = threading.Thread(target=module.log_summaries, args=(inbox, stop), daemon=True)
    summaries.start()
    try:
        wait_until(lambda: "events_received" in caplog.text, timeout=10,
                   description="the summary line")
        stop.wait(0.3)  # several quiet periods go by
    finally:
        stop.set()
        summaries.join(timeout=5)

    lines = [record.getMessage() for record in caplog.records
             if record.levelname == "INFO" and "events_received" in record.getMessage()]
    assert len(lines) == 1
    assert json.loads(lines[0])["events_received"] == [
        {"tenant": "north-general", "type": "dispense.recorded", "outcome": "notification",
         "count": 3}]
