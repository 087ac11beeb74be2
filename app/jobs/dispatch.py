"""The one place the API submits work to Celery.

Work is sent by task name through a client-only Celery app configured from ``celeryconfig``:
the API never imports task code, so it stays light and cannot run a task in its own process.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery, chain, chord, signature
from celery.result import AsyncResult

from app.observability import task_context

task_context.install()


@lru_cache(maxsize=1)
def celery_client() -> Celery:
    """Return the client-only Celery app (created on first use)."""
    client = Celery("hub", set_as_current=False)
    client.config_from_object("celeryconfig")
    return client


def submit_smoke_chain(value: int) -> AsyncResult:
    """Run an echo on the io queue chained into a doubling on the compute queue."""
    client = celery_client()
    return chain(
        signature("hub.io.smoke_echo", args=(value,), app=client),
        signature("hub.compute.smoke_double", app=client),
    ).apply_async()


def submit_smoke_chord(size: int) -> AsyncResult:
    """Fan ``size`` squaring tasks out on the io queue and total them on the compute queue."""
    client = celery_client()
    header = [signature("hub.io.smoke_square", args=(number,), app=client)
              for number in range(size)]
    return chord(header, app=client)(signature("hub.compute.smoke_total", app=client))
