"""Log redaction: identifier-shaped text is masked before a log line is written.

This is the second line of defense: code never logs patient data, but if a value slips into a
message (an exception text, a caller-chosen request id), identifier-shaped text is masked. Names
and free text cannot be recognised by shape, which is why the first line of defense (logging ids
and classes only) is the one that counts. The same masking is applied to error bodies, and the same
shapes are what the boundary check in :mod:`app.phi.boundary` refuses in stored values.
"""

from __future__ import annotations

import logging
import re

PHI_PATTERNS = (
    re.compile(r"\bMRN[\s:#-]*\d{4,}\b", re.IGNORECASE),  # medical record numbers
    re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),                  # SSN-shaped
    re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"),             # e-mail addresses
    re.compile(r"(?<!\d)(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?!\d)"),  # phones
)
SCRUBBED = "[scrubbed]"
_STANDARD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}


def scrub(text: str) -> str:
    """Mask identifier-shaped substrings of ``text``."""
    for pattern in PHI_PATTERNS:
        text = pattern.sub(SCRUBBED, text)
    return text


def scrub_values(value):
    """Return ``value`` (text, or dicts and lists of it) with identifier-shaped text masked."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: scrub_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_values(item) for item in value]
    return value


def looks_like_identifier(text: str) -> bool:
    """Tell whether ``text`` holds an identifier-shaped substring (an MRN, SSN, e-mail, phone)."""
    return scrub(text) != text


class PhiScrubFilter(logging.Filter):
    """Mask identifier-shaped text in the message and in string extras of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_FIELDS and isinstance(value, str):
                setattr(record, name, scrub(value))
        return True
