"""Celery tasks of the hub. ``celery -A tasks worker`` finds the app here."""

from tasks.celery_app import celery_app

app = celery_app

__all__ = ["app", "celery_app"]
