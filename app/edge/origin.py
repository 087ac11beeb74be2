"""The hub's public origin: every URL the hub builds starts with ``HUB_PUBLIC_BASE_URL``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit


class PublicOrigin:
    """WSGI middleware that gives every request the hub's configured scheme and host.

    A client chooses the ``Host`` header it sends; werkzeug builds ``request.url``,
    ``request.host_url`` and ``url_for(..., _external=True)`` from it, so ``Host: evil.example``
    would put ``http://evil.example/...`` into ``Location``, a job's ``status_url`` and FHIR
    bundle links. Replacing scheme and host here, before Flask sees the request, fixes every
    such URL at once, including ones future code builds, instead of each call site remembering
    to use a setting.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], base_url: str):
        parts = urlsplit(base_url)
        self.wsgi_app = wsgi_app
        self.scheme = parts.scheme
        self.host = parts.netloc

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        environ["wsgi.url_scheme"] = self.scheme
        environ["HTTP_HOST"] = self.host
        return self.wsgi_app(environ, start_response)
