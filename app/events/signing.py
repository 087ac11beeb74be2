"""Webhook signatures (Standard Webhooks, with the ``standardwebhooks`` package) and each
subscription's signing secret.

The secret is derived, not stored: HMAC-SHA256(``HUB_SECRET_KEY``, "webhook-signing-secret:"
+ subscription id), written in the Standard Webhooks form ``whsec_<base64>``. Derivation was
chosen over encrypting a random secret at rest because it keeps the secret out of the database
altogether (a database copy or backup reveals nothing, and there is no encryption key of its
own to manage) while delivery can always recompute it; its cost is that changing
``HUB_SECRET_KEY`` changes every subscription's secret, so a key rotation is announced to
subscribers like a secret rotation (docs/events.md). The secret is shown once, in the answer
that creates the subscription, and never logged, audited or put in a task argument.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def signing_secret(*, secret_key: str, subscription_id: uuid.UUID | str) -> str:
    """The subscription's signing secret (``whsec_…``, 32 random-looking bytes)."""
    digest = hmac.new(secret_key.encode(), f"webhook-signing-secret:{subscription_id}".encode(),
                      hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(digest).decode("ascii")


def webhook_id(delivery_id: uuid.UUID | str) -> str:
    """The ``webhook-id`` of a delivery: the same on every attempt and replay of one event to
    one subscription, so a receiver can drop a repeat."""
    return f"msg_{uuid.UUID(str(delivery_id)).hex}"


def signed_headers(*, secret: str, message_id: str, sent_at: datetime, body: str
                   ) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt (the timestamp is the attempt's)."""
    signature = Webhook(secret).sign(msg_id=message_id, timestamp=sent_at, data=body)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature}
