"""``/healthz`` and ``/readyz``."""

from __future__ import annotations

from dataclasses import asdict

from flask_smorest import Blueprint

from app.extensions import resources
from app.health import service
from app.health.schemas import LivenessSchema, ReadinessSchema
from app.problems import problem_response

blp = Blueprint("health", __name__, description="Liveness and readiness probes.")


@blp.get("/healthz")
@blp.response(200, LivenessSchema)
def healthz():
    """The process is alive (no dependency is checked)."""
    return {"status": "alive"}


@blp.get("/readyz")
@blp.response(200, ReadinessSchema)
@blp.alt_response(503, description="A part is unreachable; `checks` says which.")
def readyz():
    """The database, Redis and the Celery broker are all reachable."""
    hub = resources()
    checks = service.readiness(engine=hub.database.engine, redis_client=hub.redis,
                               broker_url=hub.settings.celery_broker_url)
    shown = {name: asdict(result) for name, result in checks.items()}
    failed = sorted(name for name, result in checks.items() if not result.ok)
    if failed:
        return problem_response(503, title="Not ready", detail=f"Unreachable: {', '.join(failed)}.",
                                problem_type="not-ready", checks=shown,
                                headers={"Retry-After": "5"})
    return {"status": "ready", "checks": shown}
