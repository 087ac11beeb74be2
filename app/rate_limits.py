"""Per-client rate limits (Flask-Limiter), counted in Redis so every API process shares them.

Every endpoint a client calls with its token counts against one shared limit per client
(``HUB_RATE_LIMIT``); the token endpoint has its own limit per client id and address, so a
guessed secret cannot be tried at speed. Over a limit: 429 problem+json with ``Retry-After``.
"""

from __future__ import annotations

import math
import time

from flask import Flask, g, request
from flask_limiter import Limiter, RateLimitExceeded

from app.problems import problem_response
from app.settings import Settings


def _client_key() -> str:
    principal = g.get("principal")
    return f"client:{principal.client_id}" if principal else f"address:{request.remote_addr}"


def _token_requester_key() -> str:
    client_id = request.form.get("client_id") or (
        request.authorization.username if request.authorization else "") or "-"
    return f"token:{client_id}:{request.remote_addr}"


def init_rate_limits(app: Flask, settings: Settings, *, client_blueprints, token_blueprint
                     ) -> Limiter:
    """Limit the client blueprints per client (one shared budget), the token blueprint per
    requester."""
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
    limiter.limit(settings.hub_token_rate_limit, key_func=_token_requester_key)(token_blueprint)
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
