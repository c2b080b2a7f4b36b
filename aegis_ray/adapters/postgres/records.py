"""Immutable rows read from the store; ``to_dict`` gives the JSON-safe form the API returns."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any, Self

from aegis_ray.core.models.execution import ExecutionState


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


class _Record:
    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """Build from a database row, ignoring columns the record does not carry."""
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        return cls(**{n: row[n] for n in names})

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: _json_safe(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }


@dataclasses.dataclass(frozen=True)
class ExecutionRecord(_Record):
    id: uuid.UUID
    tenant_id: str
    name: str | None
    manifest: dict[str, Any]
    state: ExecutionState
    attempt: int
    max_retries: int
    timeout_s: float | None
    version: int
    reason: str | None
    node_id: str | None
    exit_code: int | None
    workflow_id: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        rec = super().from_row(row)
        # Stored as text: hand callers the enum.
        return dataclasses.replace(rec, state=ExecutionState(row["state"]))


@dataclasses.dataclass(frozen=True)
class EventRecord(_Record):
    id: int
    execution_id: uuid.UUID
    ts: datetime
    attempt: int | None
    kind: str
    from_state: str | None
    to_state: str | None
    message: str
    node_id: str | None


@dataclasses.dataclass(frozen=True)
class LogRecord(_Record):
    id: int
    execution_id: uuid.UUID
    attempt: int
    ts: datetime
    stream: str
    line: str


@dataclasses.dataclass(frozen=True)
class AttemptRecord(_Record):
    execution_id: uuid.UUID
    attempt: int
    node_id: str | None
    ray_node_id: str | None
    placement_group: str | None
    started_at: datetime | None
    ended_at: datetime | None
    outcome: str | None
    reason: str | None


@dataclasses.dataclass(frozen=True)
class NodeRecord(_Record):
    id: str
    type: str | None
    region: str | None
    tags: list[str]
    resources: dict[str, Any]
    ray_node_id: str | None
    address: str | None
    version: str | None
    status: str | None
    registered_at: datetime
    last_heartbeat: datetime | None
    labels: dict[str, str]


@dataclasses.dataclass(frozen=True)
class TokenRecord(_Record):
    """A token's metadata; the secret and its hash are deliberately not part of it."""

    id: uuid.UUID
    tenant_id: str
    role: str
    description: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    node_id: str | None = None
    node_type: str | None = None
    node_types: list[str] | None = None
    redeemed_at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class ClusterEventRecord(_Record):
    """A row of the cluster feed: a node's status change or an execution's state change."""

    id: int
    ts: datetime
    kind: str
    tenant_id: str | None
    node_id: str | None
    execution_id: uuid.UUID | None
    name: str | None
    from_state: str | None
    to_state: str | None
    message: str
