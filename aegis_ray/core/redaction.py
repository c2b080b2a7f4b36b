"""Replacing an execution's secret values in its output lines with `[REDACTED:NAME#KEY]`.

Exact-value replacement, as CI systems do it (and with their limits: a value transformed in a
way not listed here, or cut by the engine's 1 MiB line limit, is not recognised). Each value is
looked for as itself, as each line of a multi-line value (output is split into lines before it
gets here), in base64 (standard and URL-safe, with and without padding), URL-encoded and
JSON-escaped. Values shorter than `MIN_CHARS` are left alone: they would match everywhere and
reveal little. Pure: no I/O, so the node agent and the tests use the same code.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from urllib.parse import quote, quote_plus

MIN_CHARS = 4
MARK = "[REDACTED:{ref}]"


def encoded_forms(value: str) -> list[str]:
    """The forms of a value that are replaced, longest first (none for a short value)."""
    if len(value) < MIN_CHARS:
        return []
    raw = value.encode()
    forms = {value, json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(raw).decode()
        forms |= {text, text.rstrip("=")}
    forms |= {line.rstrip("\r") for line in value.split("\n")}
    return sorted((f for f in forms if len(f) >= MIN_CHARS), key=len, reverse=True)


class Redactor:
    """Replaces every form of every value it was given (see the module docstring)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        """`values`: reference text ("NAME#KEY") -> its value."""
        marks: dict[str, str] = {}
        for ref, value in sorted(values.items()):
            for form in encoded_forms(value):
                marks.setdefault(form, MARK.format(ref=ref))
        self._marks = marks
        # Longest first: where two forms start at the same place, the longer one wins.
        ordered = sorted(marks, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self._marks[m.group(0)], text)
