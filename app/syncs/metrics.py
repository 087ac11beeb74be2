"""Prometheus figures of every sync, read from the schedules and runs tables at scrape time.

Runs happen in worker processes that serve no ``/metrics``; the tables are the record, so the
API computes these gauges from them on each scrape (a few rows per tenant).
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy.orm import Session

from app.settings import Settings
from app.syncs.service import list_syncs

LABELS = ["sync", "tenant"]
OUTCOMES = ("running", "succeeded", "failed")


def _timestamp(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


class SyncCollector:
    """One scrape's view of the syncs (built per scrape, never registered globally)."""

    def __init__(self, views: list[dict]):
        self.views = views

    def collect(self):
        families = {
            "enabled": GaugeMetricFamily("hub_sync_enabled", "1 if the sync is scheduled.",
                                         labels=LABELS),
            "interval": GaugeMetricFamily("hub_sync_interval_seconds", "Seconds between runs "
                                          "(interval schedules only).", labels=LABELS),
            "next_due": GaugeMetricFamily("hub_sync_next_due_timestamp_seconds", "When beat "
                                          "next sends the sync (Unix time).", labels=LABELS),
            "last_run": GaugeMetricFamily("hub_sync_last_run_timestamp_seconds", "Start of the "
                                          "last run (Unix time).", labels=LABELS),
            "duration": GaugeMetricFamily("hub_sync_last_duration_seconds", "Duration of the "
                                          "last finished run.", labels=LABELS),
            "outcome": GaugeMetricFamily("hub_sync_last_outcome", "1 for the outcome of the "
                                         "last run (running, succeeded, failed).",
                                         labels=[*LABELS, "outcome"]),
            "success": GaugeMetricFamily("hub_sync_last_success_timestamp_seconds", "End of "
                                         "the last successful run (Unix time).", labels=LABELS),
            "failures": GaugeMetricFamily("hub_sync_consecutive_failures", "Failed runs in a "
                                          "row (0 after a success).", labels=LABELS),
            "skipped": CounterMetricFamily("hub_sync_skipped_runs", "Runs skipped because "
                                           "the previous run was still going.", labels=LABELS),
        }
        for view in self.views:
            labels = [view["sync"], view["tenant"] or "hub"]
            families["enabled"].add_metric(labels, 1.0 if view["enabled"] else 0.0)
            if "every_seconds" in view["schedule"]:
                families["interval"].add_metric(labels, view["schedule"]["every_seconds"])
            if view["next_due_at"]:
                families["next_due"].add_metric(labels, _timestamp(view["next_due_at"]))
            last = view["last_run"]
            if last:
                families["last_run"].add_metric(labels, _timestamp(last["started_at"]))
                if last["duration_seconds"] is not None:
                    families["duration"].add_metric(labels, last["duration_seconds"])
                for outcome in OUTCOMES:
                    families["outcome"].add_metric([*labels, outcome],
                                                   1.0 if last["outcome"] == outcome else 0.0)
            if view["last_succeeded_at"]:
                families["success"].add_metric(labels, _timestamp(view["last_succeeded_at"]))
            families["failures"].add_metric(labels, view["consecutive_failures"])
            families["skipped"].add_metric(labels, view["skipped_runs"])
        yield from families.values()


def render_sync_metrics(*, db_session: Session, settings: Settings) -> bytes:
    """The exposition text of every sync's figures."""
    registry = CollectorRegistry()
    registry.register(SyncCollector(list_syncs(db_session=db_session, settings=settings,
                                               tenant_id=None)))
    return generate_latest(registry)
