"""Parsing and formatting of the quantities manifests use: sizes, durations and CPU.

Sizes follow Kubernetes ("512Mi" binary, "500M" decimal); durations follow Go ("1h30m", "250ms");
CPU is in millicores, because the reference manifest writes ``cpu: 500`` for half a core.
"""

from __future__ import annotations

import functools
import math
import re
from decimal import Decimal, InvalidOperation

MiB, GiB, TiB = 2**20, 2**30, 2**40

MEMORY_HINT = "must be a size like 512Mi, 1Gi or a number of bytes"
DURATION_HINT = "must be a duration like 600s, 10m, 1h30m, 250ms or a number of seconds"
CPU_HINT = "must be millicores like 500 or 500m, or cores with a decimal point like 0.5 or 2.0"

_MEMORY_UNITS: dict[str, int] = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": MiB,
    "Gi": GiB,
    "Ti": TiB,
    "Pi": 2**50,
}
_MEMORY_RE = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?")

_DURATION_UNITS: dict[str, Decimal] = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_DURATION_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d)"
_DURATION_RE = re.compile(rf"(?:{_DURATION_PART})+")
_DURATION_PART_RE = re.compile(_DURATION_PART)
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def parse_memory(value: str | int | float) -> int:
    """A size in bytes from an int (bytes) or a string such as "512Mi", "1G" or "1048576"."""
    # bool is an int subclass, but `memory: true` is a mistake, not one byte.
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(MEMORY_HINT)
        if value < 0:
            raise ValueError(f"{MEMORY_HINT}, not negative")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(MEMORY_HINT)
    match = _MEMORY_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(MEMORY_HINT)
    number, unit = match.group(1), match.group(2) or ""
    if not unit and "." in number:
        raise ValueError(f"{MEMORY_HINT} (whole bytes)")
    # "1.1Gi" is not a whole number of bytes: round up, as Kubernetes does.
    return math.ceil(Decimal(number) * _MEMORY_UNITS[unit])


def parse_duration(value: str | int | float) -> float:
    """Seconds from a number (seconds) or a string such as "600s", "10m", "1h30m", "250ms"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{DURATION_HINT}, not {value!r}")
        return seconds
    if not isinstance(value, str):
        raise ValueError(DURATION_HINT)
    text = value.strip()
    if _NUMBER_RE.fullmatch(text):
        return float(text)
    if not _DURATION_RE.fullmatch(text):
        raise ValueError(DURATION_HINT)
    total = sum(
        (Decimal(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART_RE.findall(text)),
        Decimal(0),
    )
    return float(total)


def parse_cpu(value: str | int | float) -> int:
    """Millicores. Ints, digit strings and "500m" are millicores; 0.5, "1.5", "2.0" are cores."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"{CPU_HINT}, not {value!r}")
        if isinstance(value, int):
            return value
        return _cores_to_millis(Decimal(repr(value)))
    if not isinstance(value, str):
        raise ValueError(CPU_HINT)
    text = value.strip()
    if re.fullmatch(r"\d+m", text):
        return int(text[:-1])
    if re.fullmatch(r"\d+", text):
        # Same meaning quoted or not: `cpu: "500"` is `cpu: 500`.
        return int(text)
    if re.fullmatch(r"\d*\.\d+|\d+\.", text):
        try:
            return _cores_to_millis(Decimal(text))
        except InvalidOperation:
            pass
    raise ValueError(CPU_HINT)


def _cores_to_millis(cores: Decimal) -> int:
    millis = cores * 1000
    if millis != millis.to_integral_value():
        raise ValueError(f"{CPU_HINT} (no finer than 1 millicore)")
    return int(millis)


_FORMAT_UNITS = (("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


@functools.lru_cache(maxsize=4096)  # fit explanations format the same few sizes many times
def format_memory(num_bytes: int | float) -> str:
    """Human size in binary units: 536870912 -> "512Mi", 1.5 GiB -> "1.5Gi", 100 -> "100"."""
    num_bytes = int(num_bytes)
    for unit, size in _FORMAT_UNITS:
        if abs(num_bytes) >= size:
            if num_bytes % size == 0:
                return f"{num_bytes // size}{unit}"
            return f"{num_bytes / size:.1f}{unit}"
    return str(num_bytes)


def format_duration(seconds: float) -> str:
    """Compact duration: 600 -> "10m", 5400 -> "1h30m", 0.25 -> "250ms", 0 -> "0s"."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    sign = "-" if millis < 0 else ""
    millis = abs(millis)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return sign + "".join(parts)


def format_cpu(millis: int | float) -> str:
    """CPU as Kubernetes writes it: 500 -> "500m", 2000 -> "2000m" (parses back with parse_cpu)."""
    return f"{int(millis)}m"
