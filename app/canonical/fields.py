"""Marshmallow fields for canonical values in request parameters: each accepts every common
spelling and hands the view the canonical one, or a field error saying what is wrong."""

from __future__ import annotations

from datetime import datetime

from marshmallow import ValidationError, fields

from app.canonical.ndc import InvalidNdc, normalize_ndc
from app.canonical.times import InvalidTimestamp, to_utc
from app.canonical.units import InvalidUnitCode, canonical_unit


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
    """An ISO 8601 timestamp WITH an offset (``…Z`` or ``…-05:00``) → aware UTC datetime. A
    time without an offset is refused: the hub cannot know which site's clock it means."""

    def _deserialize(self, value, attr, data, **kwargs) -> datetime:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise ValidationError("not an ISO 8601 timestamp") from None
        if parsed.tzinfo is None:
            raise ValidationError("a timestamp needs a UTC offset (…Z or …+01:00)")
        try:
            return to_utc(parsed)
        except InvalidTimestamp as invalid:
            raise ValidationError(str(invalid)) from None
