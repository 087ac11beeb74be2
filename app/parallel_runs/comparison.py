"""Field-by-field comparison of two canonical answers, and what of a difference may be kept.

Both sides are the same canonical shape, minimized by the same PHI policy for the same
consumer, so a difference is a difference of meaning, never of spelling or of field names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from app.phi.boundary import reportable_value
from app.phi.policy import disclosed_paths

MISSING = "missing"   # the hub has it, the legacy answer does not
EXTRA = "extra"       # the legacy answer has it, the hub does not
CHANGED = "changed"   # both have it, with other values
TYPE = "type"         # both have it, as different kinds of value (text vs number, list vs object)
KINDS = (MISSING, EXTRA, CHANGED, TYPE)

_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class Difference:
    """One field that differs: its exact path (``movements[2].at``), the list-free field it is
    an instance of (``movements[].at``), the kind, and both values as found."""

    path: str
    field: str
    kind: str
    hub_value: Any
    legacy_value: Any


def field_of(path: str) -> str:
    """The list-free form of a path: ``movements[2].at`` → ``movements[].at``."""
    return _INDEX.sub("[]", path)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _difference(path: str, kind: str, ours: Any, theirs: Any) -> Difference:
    return Difference(path, field_of(path), kind, ours, theirs)


def differences(ours: Any, theirs: Any, path: str = "") -> list[Difference]:
    """Every difference between the hub's answer (``ours``) and the legacy endpoint's
    (``theirs``), in document order.

    Objects are compared key by key and lists index by index; a field one side lacks or holds
    as null is ``missing`` (from the legacy answer) or ``extra`` (in it), and a whole object
    or list element one side lacks is one difference at its own path, not one per field.
    """
    if ours is None and theirs is None:
        return []
    if theirs is None:
        return [_difference(path, MISSING, ours, None)]
    if ours is None:
        return [_difference(path, EXTRA, None, theirs)]
    if _kind_of(ours) != _kind_of(theirs):
        return [_difference(path, TYPE, ours, theirs)]
    if isinstance(ours, dict):
        found: list[Difference] = []
        for key in [*ours, *(key for key in theirs if key not in ours)]:
            found += differences(ours.get(key), theirs.get(key),
                                 f"{path}.{key}" if path else key)
        return found
    if isinstance(ours, list):
        found = []
        for index in range(max(len(ours), len(theirs))):
            found += differences(ours[index] if index < len(ours) else None,
                                 theirs[index] if index < len(theirs) else None,
                                 f"{path}[{index}]")
        return found
    return [] if ours == theirs else [_difference(path, CHANGED, ours, theirs)]


def shown_value(value: Any, field: str, disclosed: frozenset[str]) -> str | None:
    """The text a report may show for ``value`` of ``field``, or None.

    Only fields the PHI policy passes through unchanged (``Keep``) are candidates, and only
    scalar values that pass the PHI boundary's check of stored text; a pseudonym, a
    generalized date, an object or anything identifier-shaped is never shown.
    """
    if field not in disclosed or value is None or not reportable_value(value):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def disclosed_fields(policy_resource: str, consumer: str, prefix: str = "") -> frozenset[str]:
    """The fields of ``policy_resource`` whose values a report may show to ``consumer``'s
    tenant (see :func:`app.phi.policy.disclosed_paths`), named as they appear in the compared
    answer (``prefix`` ``items[].`` for a page of records)."""
    return frozenset(prefix + path for path in disclosed_paths(policy_resource, consumer))
