"""Counts every non-admin request a demo system receives, rejected and faulted ones included.

Tests use it to prove the hub did, or did not, call downstream. In-process state under a lock,
which is correct because the servers run ONE gunicorn worker (see :mod:`demo_systems.faults`).
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class RequestCounter:
    """Request totals by site and by endpoint (``"GET /api/v2/sites/<site>/containers"``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._by_site: Counter[str] = Counter()
        self._by_endpoint: Counter[str] = Counter()
        self._by_site_endpoint: dict[str, Counter[str]] = {}

    def record(self, *, site: str | None, endpoint: str) -> None:
        """Count one request; ``site`` is None when the path names no site."""
        with self._lock:
            self._total += 1
            self._by_endpoint[endpoint] += 1
            if site is not None:
                self._by_site[site] += 1
                self._by_site_endpoint.setdefault(site, Counter())[endpoint] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counts so far."""
        with self._lock:
            return {
                "total": self._total,
                "by_site": dict(self._by_site),
                "by_endpoint": dict(self._by_endpoint),
                "by_site_endpoint": {site: dict(counts) for site, counts in self._by_site_endpoint.items()},
            }

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self._total = 0
            self._by_site.clear()
            self._by_endpoint.clear()
            self._by_site_endpoint.clear()
