"""``hub_parallel_run_comparisons_total{lookup,outcome}``, read from the parallel-runs table at
scrape time: comparisons happen in workers, which serve no ``/metrics``, and the table's
totals are the record (they survive restarts and agree with the report)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from sqlalchemy.orm import Session

from app.parallel_runs.service import comparison_totals


class ParallelRunCollector:
    """One scrape's totals (built per scrape, never registered globally)."""

    def __init__(self, totals: dict[tuple[str, str], int]):
        self.totals = totals

    def collect(self):
        family = CounterMetricFamily(
            "hub_parallel_run_comparisons", "Parallel-run comparisons of every tenant by lookup "
            "and outcome (match, mismatch, legacy_error).", labels=["lookup", "outcome"])
        for (lookup, outcome), count in sorted(self.totals.items()):
            family.add_metric([lookup, outcome], count)
        yield family


def render_parallel_run_metrics(*, db_session: Session) -> bytes:
    """The exposition text of the parallel runs' comparison totals."""
    registry = CollectorRegistry()
    registry.register(ParallelRunCollector(comparison_totals(db_session=db_session)))
    return generate_latest(registry)
