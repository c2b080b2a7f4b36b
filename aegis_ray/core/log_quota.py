"""How much of an execution's output is stored: each line up to a length, the whole up to a quota.

A line longer than `line_max` bytes (UTF-8) is cut there and marked with how much was dropped.
Once the execution's stored output reaches `total_max` bytes, one marker line says so and the
rest is counted, not stored. A chatty agent then costs the database a bounded amount.
"""

from __future__ import annotations

from dataclasses import dataclass


def _size(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


@dataclass
class LogQuota:
    line_max: int  # bytes of one stored line
    total_max: int  # bytes of output stored per execution
    used: int = 0  # bytes stored so far (every attempt)
    cut_lines: int = 0
    dropped_lines: int = 0  # lines not stored at all (past the quota)
    dropped_bytes: int = 0  # bytes not stored: cut off long lines, and whole dropped lines

    @property
    def full(self) -> bool:
        return self.used >= self.total_max

    def admit(self, text: str) -> str | None:
        """What to store for one line: itself, cut and marked, the quota's marker, or None."""
        size = _size(text)
        if self.full:
            self.dropped_lines += 1
            self.dropped_bytes += size
            return None
        if size > self.line_max:
            kept = text.encode("utf-8", "replace")[: self.line_max].decode("utf-8", "ignore")
            cut = size - _size(kept)
            self.cut_lines += 1
            self.dropped_bytes += cut
            text = f"{kept} [aegis: line cut, {cut} more bytes not stored]"
            size = _size(text)
        if self.used + size > self.total_max:
            self.dropped_lines += 1
            self.dropped_bytes += size
            self.used = self.total_max
            return (
                f"[aegis: log quota of {self.total_max} bytes reached: the rest of this "
                "execution's output is not stored]"
            )
        self.used += size
        return text

    def summary(self) -> str:
        """One line for the execution's events; empty if nothing was cut or dropped."""
        if not self.dropped_bytes:
            return ""
        parts = []
        if self.cut_lines:
            parts.append(f"{self.cut_lines} lines cut at {self.line_max} bytes")
        if self.dropped_lines:
            parts.append(f"{self.dropped_lines} lines over the quota of {self.total_max} bytes")
        return f"log output not stored: {', '.join(parts)}; {self.dropped_bytes} bytes dropped"
