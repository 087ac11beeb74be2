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
timeout = 60
