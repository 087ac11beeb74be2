"""Per-client rate limits (Flask-Limiter), counted in Redis so every API process shares them.

Every endpoint a client calls with its token counts against one shared limit per client
(``HUB_RATE_LIMIT``). The token endpoint has three limits of its own, whichever way the client
credentials are sent (HTTP Basic or the form body):

- every token request, per presented client id (``HUB_TOKEN_RATE_LIMIT``): a client cannot
  mint tokens (nor make the hub run its slow secret hash) at speed;
- failed client authentications per presented client id (``HUB_TOKEN_FAILURES_PER_CLIENT``):
  one client's secret cannot be guessed from many addresses at once;
- failed client authentications per source address (``HUB_TOKEN_FAILURES_PER_ADDRESS``): one
  address cannot guess by changing the client id on every attempt.

Successful authentications do not count against the two failure budgets. Over any limit: 429
problem+json with ``Retry-After``.

No caller input becomes a Redis key as sent: a presented client id (unauthenticated, possibly a
patient's name typed into the wrong field) is keyed by an HMAC under the hub's secret key, and
an address only after it parsed as an IP address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time

from flask import Flask, Response, g, request
from flask_limiter import Limiter, RateLimitExceeded
from werkzeug.exceptions import HTTPException

from app.auth.service import presented_credentials
from app.problems import problem_response
from app.settings import Settings


def _client_key() -> str:
    principal = g.get("principal")
    # A principal's client id comes from a verified token, so it matches the id grammar.
    return f"client:{principal.client_id}" if principal else _address_key()


def _address_key() -> str:
    try:
        return f"address:{ipaddress.ip_address(request.remote_addr or '')}"
    except ValueError:
        return "address:unknown"


def _client_authentication_failed(response: Response) -> bool:
    # invalid_client is the token endpoint's only 401 (RFC 6749 §5.2).
    return response.status_code == 401


class _PresentedClientKey:
    """Key of the client id a token request presents: an HMAC of it under the hub's secret
    key, so the id as sent never reaches Redis and keys cannot be predicted from outside."""

    def __init__(self, secret_key: str, purpose: str):
        self._secret = secret_key.encode()
        self._purpose = purpose

    def __call__(self) -> str:
        try:
            client_id = presented_credentials(form=request.form,
                                              authorization=request.authorization).client_id
        except HTTPException:
            client_id = None  # an unreadable body; the view answers it
        digest = hmac.new(self._secret, f"{self._purpose}\0{client_id or ''}".encode(),
                          hashlib.sha256).hexdigest()[:32]
        return f"{self._purpose}:{digest}"


def init_rate_limits(app: Flask, settings: Settings, *, client_blueprints, token_blueprint
                     ) -> Limiter:
    """Limit the client blueprints per client (one shared budget), the token blueprint per
    presented client id and per address."""
    limiter = Limiter(
        key_func=_client_key, storage_uri=settings.redis_url,
        # No X-RateLimit-* headers: they cost a second Redis round trip on every request of
        # the hot path, and Flask-Limiter would stretch any Retry-After the hub sets (a 503's
        # estimate, an open breaker's trial time) to the end of the rate-limit window. The hub
        # sets Retry-After itself, on 429 answers.
        headers_enabled=False,
        strategy="moving-window", key_prefix="hub:ratelimit",
        # A Redis outage must not turn into an API outage: limits fall back to per-process
        # memory until Redis answers again.
        swallow_errors=True, in_memory_fallback_enabled=True)
    shared = limiter.shared_limit(settings.hub_rate_limit, scope="client")
    for blueprint in client_blueprints:
        shared(blueprint)
    secret_key = settings.hub_secret_key
    limiter.limit(settings.hub_token_rate_limit,
                  key_func=_PresentedClientKey(secret_key, "token-requests"))(token_blueprint)
    # Checked before the request, counted after it only when client authentication failed.
    limiter.limit(settings.hub_token_failures_per_client,
                  key_func=_PresentedClientKey(secret_key, "token-failures"),
                  deduct_when=_client_authentication_failed)(token_blueprint)
    limiter.limit(settings.hub_token_failures_per_address,
                  key_func=lambda: f"token-failures:{_address_key()}",
                  deduct_when=_client_authentication_failed)(token_blueprint)
    limiter.init_app(app)

    @app.errorhandler(RateLimitExceeded)
    def _too_many_requests(_error: RateLimitExceeded):
        limit = limiter.current_limit
        if limit is None:
            return problem_response(429, detail="Rate limit reached; slow down.",
                                    headers={"Retry-After": "60"})
        reset_at = int(limit.reset_at)
        # Never longer than the window itself (rounding can add a second).
        retry_after = max(1, min(limit.limit.get_expiry(), math.ceil(limit.reset_at - time.time())))
        return problem_response(429, detail="Rate limit reached; slow down.", headers={
            "Retry-After": str(retry_after),
            "X-RateLimit-Limit": str(limit.limit.amount), "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset_at)})

    return limiter
