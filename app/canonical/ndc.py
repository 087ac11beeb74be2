"""National Drug Codes: every common written form to the canonical 11-digit (5-4-2) code.

An NDC is labeler-product-package. The 10-digit forms come in three layouts, 4-4-2, 5-3-2 and
5-4-1; the 11-digit (HIPAA) form pads the short segment with a leading zero to 5-4-2. With
dashes the layout is plain; a bare 10-digit string is ambiguous (``1234567890`` could be any of
the three), so it is refused rather than guessed.

NDCs are ASCII by grammar: ``str.isdigit()`` is true for full-width and Arabic-Indic digits,
so the value is checked to be ASCII (and at most ``MAX_NDC_LENGTH`` characters) before
anything else reads it.
"""

from __future__ import annotations

import re

MAX_NDC_LENGTH = 20
_SEPARATORS = re.compile(r"[ \t\-]+")
_DIGITS = re.compile(r"^[0-9]+$", re.ASCII)
_CANONICAL_WIDTHS = (5, 4, 2)


class InvalidNdc(ValueError):
    """The value is not an NDC in any form the hub accepts; the message says why."""


def normalize_ndc(value: str) -> str:
    """Return the 11-digit NDC (no dashes) for ``value`` in any accepted form.

    Accepted: ``04094888802`` (11 digits), ``04094-8888-02`` (5-4-2), and the dashed 10-digit
    layouts ``0409-4888-02`` (4-4-2), ``04094-888-02`` (5-3-2), ``04094-8888-2`` (5-4-1).
    """
    if not isinstance(value, str):
        raise InvalidNdc("an NDC must be a string")
    if not value.isascii():
        raise InvalidNdc("an NDC has only ASCII digits and dashes")
    if len(value) > MAX_NDC_LENGTH:
        raise InvalidNdc(f"an NDC has at most {MAX_NDC_LENGTH} characters")
    text = value.strip()
    parts = [part for part in _SEPARATORS.split(text) if part]
    if not parts or not all(_DIGITS.match(part) for part in parts):
        raise InvalidNdc("an NDC has only digits and dashes")
    if len(parts) == 1:
        digits = parts[0]
        if len(digits) == 11:
            return digits
        if len(digits) == 10:
            raise InvalidNdc("a 10-digit NDC needs dashes to tell its layout (4-4-2, 5-3-2 or "
                             "5-4-1)")
        raise InvalidNdc("an NDC has 10 or 11 digits")
    if len(parts) != 3:
        raise InvalidNdc("an NDC has three segments: labeler, product, package")
    widths = tuple(len(part) for part in parts)
    if widths == _CANONICAL_WIDTHS:
        return "".join(parts)
    if widths == (4, 4, 2):
        return "0" + "".join(parts)
    if widths == (5, 3, 2):
        return parts[0] + "0" + parts[1] + parts[2]
    if widths == (5, 4, 1):
        return parts[0] + parts[1] + "0" + parts[2]
    raise InvalidNdc("NDC segments must be 4-4-2, 5-3-2, 5-4-1 or 5-4-2 digits long")


def format_ndc11(ndc11: str) -> str:
    """Return an 11-digit NDC with dashes, 5-4-2 (``04094-8888-02``)."""
    if len(ndc11) != 11 or not _DIGITS.match(ndc11):
        raise InvalidNdc("an 11-digit NDC has 11 digits")
    return f"{ndc11[:5]}-{ndc11[5:9]}-{ndc11[9:]}"
