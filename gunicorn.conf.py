"""Gunicorn settings of the hub's API (``gunicorn -c gunicorn.conf.py wsgi:app``)."""

from app.settings import load_settings

_settings = load_settings()

bind = f"{_settings.hub_api_host}:{_settings.hub_api_port}"
workers = _settings.hub_api_workers
# gthread: a cache miss waits on a downstream system; threads keep other requests moving in
# the same process meanwhile (sync workers would cap at workers ÷ downstream latency).
worker_class = "gthread"
threads = _settings.hub_api_threads
# The hub writes its own JSON access line per request (with request id); gunicorn's would
# duplicate it and include query strings.
accesslog = None
errorlog = "-"
loglevel = "warning"
graceful_timeout = 10
# Gunicorn's runtime control socket lives at one fixed path per user: two hubs (or a hub and
# the test suite's) on one machine would collide on it, and the hub does not use it.
control_socket_disable = True
timeout = 60


def child_exit(_server, worker):
    """Drop a dead worker's live gauges from the shared Prometheus files (multiprocess mode)."""
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
