"""The demo webhook subscriber: a hospital system that listens to the hub's events.

    python -m demo_systems.subscriber --host 127.0.0.1 --port 8109 --secrets-file FILE

It receives ``POST /events/<tenant>``, verifies the Standard Webhooks signature with the
``standardwebhooks`` package and the tenant's signing secret (``FILE`` is JSON,
``{tenant: "whsec_…"}``, read again when a tenant is not yet known, so secrets written after
the start are found), drops repeats by ``webhook-id``, counts what it got, and logs once a
minute what arrived since (counts by tenant, type and outcome; with ``--verbose`` also one
line per event: tenant, type, webhook-id, full payload or notification, verified). A signature
that does not verify is logged at once. Never the payload itself: a full payload is
minimized, but a demo log is no place to learn otherwise. ``GET /stats`` answers the counts.

It imports nothing of the hub: it is a hospital's system, and only the signature ties it to
the hub.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections import Counter
from pathlib import Path

from flask import Flask, jsonify, request
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from werkzeug.serving import run_simple

logger = logging.getLogger("demo_systems.subscriber")
SEEN_IDS_KEPT = 10_000


class Inbox:
    """What the subscriber received: counts by (tenant, type, outcome), and recent ids."""

    def __init__(self, secrets_file: Path) -> None:
        self._secrets_file = secrets_file
        self._secrets: dict[str, str] = {}
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self._seen: dict[str, None] = {}

    def secret(self, tenant: str) -> str | None:
        with self._lock:
            if tenant not in self._secrets:
                try:
                    self._secrets = json.loads(self._secrets_file.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    return None
            return self._secrets.get(tenant)

    def first_time(self, webhook_id: str) -> bool:
        with self._lock:
            if webhook_id in self._seen:
                return False
            self._seen[webhook_id] = None
            if len(self._seen) > SEEN_IDS_KEPT:
                self._seen.pop(next(iter(self._seen)))
            return True

    def count(self, tenant: str, event_type: str, outcome: str) -> None:
        with self._lock:
            self.counts[(tenant, event_type, outcome)] += 1

    def since(self, earlier: Counter) -> Counter:
        """What arrived since the counts were ``earlier``."""
        with self._lock:
            return self.counts - earlier


SUMMARY_SECONDS = 60


def log_summaries(inbox: Inbox, stop: threading.Event) -> None:
    """Log once a minute what arrived in that minute (nothing when nothing did)."""
    earlier: Counter = Counter()
    while not stop.wait(SUMMARY_SECONDS):
        arrived = inbox.since(earlier)
        earlier = earlier + arrived
        if arrived:
            logger.info(json.dumps({"events_received": [
                {"tenant": tenant, "type": event_type, "outcome": outcome, "count": count}
                for (tenant, event_type, outcome), count in sorted(arrived.items())]}))


def create_app(secrets_file: Path, inbox: Inbox | None = None) -> Flask:
    """The subscriber's WSGI app."""
    app = Flask("demo_subscriber")
    inbox = inbox or Inbox(secrets_file)

    @app.post("/events/<tenant>")
    def receive(tenant: str):
        secret = inbox.secret(tenant)
        if secret is None:
            inbox.count(tenant, "-", "unknown_tenant")
            return jsonify(error="unknown tenant"), 404
        body = request.get_data()
        try:
            event = Webhook(secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            inbox.count(tenant, "-", "bad_signature")
            logger.warning(json.dumps({"tenant": tenant, "verified": False,
                                       "webhook_id": request.headers.get("webhook-id")}))
            return jsonify(error="signature does not verify"), 401
        webhook_id = request.headers["webhook-id"]
        event_type = str(event.get("type"))
        if not inbox.first_time(webhook_id):
            inbox.count(tenant, event_type, "repeat")
            return "", 204
        payload = "full" if "resource" in (event.get("data") or {}) else "notification"
        inbox.count(tenant, event_type, payload)
        logger.debug(json.dumps({"tenant": tenant, "type": event_type, "webhook_id": webhook_id,
                                 "payload": payload, "verified": True}))
        return "", 204

    @app.get("/stats")
    def stats():
        with inbox._lock:
            counts = [{"tenant": tenant, "type": event_type, "outcome": outcome, "count": count}
                      for (tenant, event_type, outcome), count in sorted(inbox.counts.items())]
        return jsonify(counts=counts)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo_systems.subscriber",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secrets-file", type=Path, required=True,
                        help="JSON {tenant: whsec_…} written by the local stack (owner-only).")
    parser.add_argument("--verbose", action="store_true",
                        help="Also log one line per event received.")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, format="%(message)s",
                        level=logging.DEBUG if args.verbose else logging.INFO)
    # werkzeug's access log would add a line per request beside the subscriber's own.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    inbox = Inbox(args.secrets_file)
    threading.Thread(target=log_summaries, args=(inbox, threading.Event()), daemon=True,
                     name="summaries").start()
    run_simple(args.host, args.port, create_app(args.secrets_file, inbox), threaded=True)


if __name__ == "__main__":
    main()
