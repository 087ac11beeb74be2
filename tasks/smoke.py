"""Smoke tasks: prove a chain across two queues and a chord run end to end.

Each returns the queue it was delivered on, so a test (or ``flask hub smoke``) can see that
routing really sent the work where the names say.
"""

from __future__ import annotations

from tasks.celery_app import celery_app


def _queue(task) -> str | None:
    return (task.request.delivery_info or {}).get("routing_key")


@celery_app.task(name="hub.io.smoke_echo", bind=True)
def smoke_echo(self, value: int) -> dict:
    """Return ``value`` as received, with the queue this ran on."""
    return {"value": value, "queues": [_queue(self)]}


@celery_app.task(name="hub.compute.smoke_double", bind=True)
def smoke_double(self, echoed: dict) -> dict:
    """Double the echoed value, adding this task's queue to the path."""
    return {"value": echoed["value"] * 2, "queues": echoed["queues"] + [_queue(self)]}


@celery_app.task(name="hub.io.smoke_square", bind=True)
def smoke_square(self, number: int) -> dict:
    """Return ``number`` squared, with the queue this ran on."""
    return {"value": number * number, "queue": _queue(self)}


@celery_app.task(name="hub.compute.smoke_total", bind=True)
def smoke_total(self, squares: list[dict]) -> dict:
    """Total the squares of a chord's header."""
    return {
        "total": sum(part["value"] for part in squares),
        "parts": len(squares),
        "header_queues": sorted({part["queue"] for part in squares}),
        "body_queue": _queue(self),
        "request_id": getattr(self.request, "hub_request_id", None),
    }
