"""The hub's HTTP edge: what every request and response passes through before and after a view.

- ``limits``: bounds on the request itself (URL length, header count and size, body size, JSON
  nesting depth), answered with problem+json before anything parses deeply.
- ``headers``: response headers every answer carries (``Cache-Control: no-store``,
  ``X-Content-Type-Options: nosniff``).
- ``origin``: absolute URLs the hub builds start with the configured public base URL, never
  with the ``Host`` header a client sent.
- ``server``: gunicorn's own error answers (for requests too malformed or too large to reach the
  app) as problem+json, without echoing the request.
"""
