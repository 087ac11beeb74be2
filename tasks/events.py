"""Event tasks: fan an event out to its subscriptions, attempt one webhook delivery, and the
sweeper that sends what was stored but never reached the broker. Each takes one id (or none);
the work is in ``app.events``."""

from __future__ import annotations

from app.events import service
from app.extensions import resources
from tasks.celery_app import celery_app


@celery_app.task(name="hub.io.fan_out_event")
def fan_out_event(event_id: str) -> dict:
    """Make a published event's deliveries and send their tasks."""
    session = resources().database.session
    delivery_ids = service.fan_out(db_session=session, event_id=event_id)
    return {"event_id": event_id, "deliveries": service.send_deliveries(delivery_ids)}


@celery_app.task(name="hub.maintenance.sweep_events")
def sweep_events() -> dict:
    """Send fan-outs and due deliveries whose tasks never reached the broker."""
    hub = resources()
    return service.sweep(db_session=hub.database.session, settings=hub.settings)
