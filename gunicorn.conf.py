"""Gunicorn settings of the hub's API (``gunicorn -c gunicorn.conf.py wsgi:app``)."""

from app.settings import load_settings

_settings = load_settings()

bind = f"{_settings.hub_api_host}:{_settings.hub_api_port}"
workers = _settings.hub_api_workers
# gthread: a cache miss waits on a downstream system; threads keep other requests moving in
# the same process meanwhile (sync workers would cap at workers ÷ downstream latency).
# gthread, answering gunicorn's own errors (malformed or oversized requests) with problem+json
# instead of an HTML page that repeats the request line (app/edge/server.py).
worker_class = "app.edge.server.ProblemThreadWorker"
threads = _settings.hub_api_threads
# Set explicitly, above the app's own limits (app/edge/limits.py: URL 4096 characters, 50 header
# fields of 4096 bytes): a request just over those reaches the app and gets its problem+json
# with a request id; only what is far larger stops here. 8190 is gunicorn's largest line limit.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# The hub writes its own JSON access line per request (with request id); gunicorn's would
# duplicate it and include query strings.
accesslog = None
errorlog = "-"
loglevel = "warning"
# The drain on SIGTERM (supervisord's stop, systemd's KillSignal, Kubernetes' pod deletion): the
# master closes the listening socket, each worker stops accepting at once (and closes its copy:
# app/edge/server.py), the requests in flight get up to this many seconds to finish, then the
# workers are killed. Above the downstream read timeout (HUB_DOWNSTREAM_READ_TIMEOUT, 5 s), so a
# lookup waiting on a slow hospital system still answers; the supervisors' stop timeouts
# (devstack/supervision.py STOP_WAIT_SECONDS, docs/operations.md) are set above it.
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
