"""Shared pieces of the manifest models: the strict base model and reusable field types."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Strict
from pydantic_core import PydanticCustomError

API_VERSION = "100monkeys.ai/v1"

# Field errors raised by a model-level check carry the sub-path they are about (for example
# NodeSpec reporting "node.resources"), so that the loader can point at the right key.
FIELD_ERROR = "aegis_field"
# Members of a union with a discriminator (an env value: text or a secret reference). Pydantic
# puts the member's tag in an error's location; the loader leaves it out of the field path.
TEXT_MEMBER = "<text>"
SECRET_MEMBER = "<secret>"
UNION_MEMBERS = frozenset({TEXT_MEMBER, SECRET_MEMBER})


class StrictModel(BaseModel):
    """Frozen, rejects unknown keys, accepts both field names and YAML aliases."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def field_error(sub_path: str, message: str, value: Any) -> PydanticCustomError:
    """An error about `sub_path` (dotted, relative to the model raising it)."""
    return field_errors([(sub_path, message, value)])


def field_errors(items: list[tuple[str, str, Any]]) -> PydanticCustomError:
    """Several (sub_path, message, value) errors found by one model-level check."""
    text = "; ".join(f"{path}: {message}" for path, message, _ in items)
    fields = [{"field": path, "message": message, "value": value} for path, message, value in items]
    return PydanticCustomError(FIELD_ERROR, text, {"fields": fields})


def _pattern(regex: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


DNS_LABEL_RE = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DnsLabel = Annotated[
    str,
    AfterValidator(
        _pattern(
            DNS_LABEL_RE,
            "a DNS label (1-63 lowercase letters, digits or '-', starting and ending "
            "with a letter or digit)",
        )
    ),
]

StrictInt = Annotated[int, Strict()]


def bounded(
    low: int | float, high: int | float, show: Callable[[Any], str] = str
) -> AfterValidator:
    """Reject values outside [low, high], naming the bound in the unit the user writes."""

    def check(value: Any) -> Any:
        if value < low:
            raise ValueError(f"must be at least {show(low)}")
        if value > high:
            raise ValueError(f"must be at most {show(high)}")
        return value

    return AfterValidator(check)


def unique(items: list[str]) -> list[str]:
    """Reject duplicates, naming the first repeated item."""
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"duplicate {item!r}")
        seen.add(item)
    return items
