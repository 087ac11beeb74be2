"""Marshmallow fields for canonical values in request parameters: each accepts every common
spelling and hands the view the canonical one, or a field error saying what is wrong.

Every field here has a bounded length and an ASCII grammar, checked before the value is
parsed; error messages name the rule and never repeat the value (it may be anything a client
typed, a patient's name included).
"""

from __future__ import annotations

import re
from datetime import datetime

from marshmallow import ValidationError, fields, validate

from app.canonical.ndc import InvalidNdc, normalize_ndc
from app.canonical.times import InvalidTimestamp, format_utc, to_utc
from app.canonical.units import InvalidUnitCode, canonical_unit

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Ids of records in the hospital systems (``NGH-C00001234``): ASCII letters and digits, then
up to 63 more of those or ``.``, ``_``, ``-``. No ``/``, ``#``, ``?``, ``%`` or ``..``, so an id
stays one path segment downstream."""
ID_GRAMMAR = re.compile(ID_PATTERN, re.ASCII)
ID_RULE = "1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"

# RFC 3339 date-time: seconds required, up to microseconds, an offset always.
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII)


class IdField(fields.String):
    """An id of a record in a hospital system, by ``ID_PATTERN``."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Regexp(ID_GRAMMAR, error=ID_RULE), **kwargs)


class NdcField(fields.String):
    """An NDC in any common format (NDC-11, dashed 5-4-2, 4-4-2, 5-3-2, 5-4-1) → NDC-11."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        try:
            return normalize_ndc(super()._deserialize(value, attr, data, **kwargs))
        except InvalidNdc as invalid:
            raise ValidationError(str(invalid)) from None


class UnitCodeField(fields.String):
    """A hospital unit code in any spelling (``ICU3``, ``icu-3``) → canonical (``ICU-3``)."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        try:
            return canonical_unit(super()._deserialize(value, attr, data, **kwargs))
        except InvalidUnitCode as invalid:
            raise ValidationError(str(invalid)) from None


class UtcDateTimeField(fields.String):
    """An RFC 3339 timestamp WITH an offset (``…Z`` or ``…-05:00``) → aware UTC datetime. A
    time without an offset is refused: the hub cannot know which site's clock it means."""

    def _deserialize(self, value, attr, data, **kwargs) -> datetime:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > 40 or not text.isascii():
            raise ValidationError("not an RFC 3339 timestamp")
        if not _TIMESTAMP.match(text):
            if _TIMESTAMP.match(text + "Z"):
                raise ValidationError("a timestamp needs a UTC offset (…Z or …+01:00)")
            raise ValidationError("not an RFC 3339 timestamp (2026-11-18T08:15:00Z)")
        try:
            parsed = datetime.fromisoformat(text.upper())
        except ValueError:
            raise ValidationError("not a date and time of the calendar") from None
        try:
            return to_utc(parsed)
        except InvalidTimestamp as invalid:
            raise ValidationError(str(invalid)) from None


class UtcTimestampField(fields.DateTime):
    """A time the hub stored, sent as RFC 3339 in UTC (``…Z``) on every database: SQLite
    hands stored times back without their offset, which are UTC by the hub's own rule."""

    def _serialize(self, value, attr, obj, **kwargs) -> str | None:
        return None if value is None else format_utc(to_utc(value))
