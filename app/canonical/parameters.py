"""The grammar every request schema shares: unknown parameters and body fields are refused.

A misspelt filter (``medicaton=``) silently ignored would answer unfiltered data, so every query,
path and body schema of the API derives from ``StrictSchema``. The check runs before
webargs' per-location ``unknown`` setting (which excludes unknown query parameters) can drop
anything. An unknown name is repeated in the error only when it looks like a parameter name:
a client can type anything there, a patient's name included.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from marshmallow import RAISE, Schema, ValidationError, pre_load

PARAMETER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$", re.ASCII)
UNKNOWN = "Unknown field."
UNNAMED_KEY = "_unknown"


def unknown_field_errors(names: list[str]) -> dict[str, list[str]]:
    """Field errors for unknown ``names``: by name where it looks like one, else counted."""
    errors: dict[str, list[str]] = {name: [UNKNOWN] for name in names
                                    if isinstance(name, str) and PARAMETER_NAME.match(name)}
    unnamed = len(names) - len(errors)
    if unnamed:
        errors[UNNAMED_KEY] = [f"{unnamed} unknown field(s) whose names are not field names "
                               "(not repeated here)"]
    return errors


class StrictSchema(Schema):
    """Base of request schemas: every key must be a declared field."""

    class Meta:
        unknown = RAISE

    @pre_load
    def _refuse_unknown(self, data, **_kwargs):
        if not isinstance(data, Mapping):
            return data
        known = {field.data_key or name for name, field in self.load_fields.items()}
        unknown = [name for name in data.keys() if name not in known]
        if unknown:
            raise ValidationError(unknown_field_errors(unknown))
        return data


class NoParametersSchema(StrictSchema):
    """The query of a list that takes no parameters: any parameter is refused (a misspelt
    filter is an error, not a silently unfiltered answer)."""
