"""Hospital unit codes: ``ICU-3``, ``ICU3``, ``icu 3`` and ``ICU_3`` are the same unit.

The canonical form is upper-case letters, a dash, and the unit's number (``ICU-3``; a unit
without a number, such as ``PHARMACY``, stays as it is). A tenant's connection can carry a code
map for local codes that do not follow that pattern (``{"4 WEST": "MEDSURG-4"}``); the map is
looked up first, on the upper-cased, space-normalized code.

Unit codes are ASCII by grammar: the check comes before any ``upper()`` or ``int()``, which
would otherwise read ``ıcu-3`` (dotless i), ``ſICU-3`` (long s) or ``ICU-٣`` (Arabic-Indic
three) as ``ICU-3``. A code is at most ``MAX_UNIT_CODE_LENGTH`` characters, so a 100,000-digit
"unit number" is refused before it is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MAX_UNIT_CODE_LENGTH = 32
_UNIT = re.compile(r"^([A-Z&/]+?)[\s_\-]*([0-9]{1,6})$", re.ASCII)
_NAMED_UNIT = re.compile(r"^[A-Z&/]+(?:[\s_\-][A-Z&/]+)*$", re.ASCII)


class InvalidUnitCode(ValueError):
    """The value cannot be read as a hospital unit code."""


def canonical_unit(code: str, code_map: Mapping[str, str] | None = None) -> str:
    """Return the canonical unit code of ``code`` (a native unit or ward code)."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidUnitCode("a unit code is a non-empty string")
    if not code.isascii():
        raise InvalidUnitCode("a unit code has only ASCII letters, digits, spaces, - and _")
    if len(code) > MAX_UNIT_CODE_LENGTH:
        raise InvalidUnitCode(f"a unit code has at most {MAX_UNIT_CODE_LENGTH} characters")
    text = " ".join(code.strip().upper().split())
    if code_map:
        mapped = {" ".join(key.strip().upper().split()): value for key, value in code_map.items()}
        if text in mapped:
            return canonical_unit(mapped[text])
    numbered = _UNIT.match(text)
    if numbered:
        return f"{numbered.group(1)}-{int(numbered.group(2))}"
    if _NAMED_UNIT.match(text):
        return re.sub(r"[\s_]+", "-", text, flags=re.ASCII)
    raise InvalidUnitCode("a unit code is letters followed by an optional number")
