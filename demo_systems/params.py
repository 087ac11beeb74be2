"""Query-string parsing shared by both demo systems' APIs.

Unknown parameters are refused rather than ignored: a connector that misspells a filter should
get a 400, not a silently unfiltered list.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest


class QueryError(BadRequest):
    """A query parameter the API cannot accept; carries the parameter's name."""

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


def refuse_unknown(args: MultiDict, allowed: Iterable[str]) -> None:
    """Raise for any parameter outside ``allowed``."""
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise QueryError(unknown[0], "unknown query parameter")


def text(args: MultiDict, name: str, *, choices: Iterable[str] | None = None) -> str | None:
    """An optional text parameter, None when absent or empty."""
    value = args.get(name) or None
    if value is not None and choices is not None and value not in choices:
        raise QueryError(name, f"must be one of {', '.join(choices)}")
    return value


def integer(args: MultiDict, name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    """An integer parameter within bounds, ``default`` when absent."""
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(name, "must be an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise QueryError(name, f"must be {bounds}")
    return value


def timestamp(args: MultiDict, name: str) -> float | None:
    """An ISO 8601 timestamp with a UTC offset (or ``Z``) as epoch seconds; None when absent.

    A timestamp without an offset is refused: which local time it meant is exactly the kind of
    ambiguity the hub must not paper over.
    """
    raw = args.get(name)
    if not raw:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise QueryError(name, "must be an ISO 8601 timestamp (URL-encode a '+' offset as %2B)") from None
    if moment.tzinfo is None:
        raise QueryError(name, "must carry a UTC offset, e.g. 2026-11-18T08:00:00-05:00 or ...Z")
    return moment.timestamp()
