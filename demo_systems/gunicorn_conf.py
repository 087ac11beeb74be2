"""Gunicorn settings of both demo systems (bind, threads and the app come from the command line).

Passed explicitly with ``--config``: otherwise gunicorn would load ``./gunicorn.conf.py`` from
the working directory, which is the hub's, and the demo systems must not import the hub.
"""

import os

# ONE worker process: fault plans and request counts are in-process state that every request
# must share. gthread: injected latency and hangs are sleeps, and one sleeping request must not
# hold up the rest.
workers = 1
worker_class = "gthread"
# Admin calls share this pool: with every thread asleep in an injected hang, even the DELETE
# that would lift it has to wait. Sleeping threads are cheap, so have plenty.
threads = 64
# gunicorn's control socket defaults to one path per user; several demo servers on one machine
# would fight over it.
control_socket_disable = True
# Stop quickly even with injected hangs in flight.
graceful_timeout = 3
# Off unless DEMO_ACCESS_LOG is set: the hub's syncs page through these systems every few
# minutes, and a line per page would bury the rest of the stack's log.
accesslog = "-" if os.environ.get("DEMO_ACCESS_LOG", "").strip().lower() in {
    "1", "true", "yes", "on"} else None
errorlog = "-"
# Method, path WITHOUT the query string (filters are no business of a log), status, size, time.
access_log_format = '%(t)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
