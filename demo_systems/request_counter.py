"""Counts every non-admin request a demo system receives, rejected and faulted ones included.

Tests use it to prove the hub did, or did not, call downstream. In-process state under a lock,
which is correct because the servers run ONE gunicorn worker (see :mod:`demo_systems.faults`).
"""
from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any


class RequestCounter:
    """Request totals by site and by endpoint (``"GET /api/v2/sites/<site>/containers"``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._by_site: Counter[str] = Counter()
        self._by_endpoint: Counter[str] = Counter()
        self._by_site_endpoint: dict[str, Counter[str]] = {}
        # The caller's X-Request-ID of the latest requests, so tests can follow a hub request
        # into the downstream call it caused.
        self._recent_request_ids: deque[str] = deque(maxlen=200)

    def record(self, *, site: str | None, endpoint: str, request_id: str | None = None) -> None:
        """Count one request; ``site`` is None when the path names no site."""
        with self._lock:
            self._total += 1
            if request_id:
                self._recent_request_ids.append(request_id)
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
                "by_site_endpoint": {site: dict(counts)
                                     for site, counts in self._by_site_endpoint.items()},
                "recent_request_ids": list(self._recent_request_ids),
            }

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self._total = 0
            self._by_site.clear()
            self._by_endpoint.clear()
            self._by_site_endpoint.clear()
            self._recent_request_ids.clear()
