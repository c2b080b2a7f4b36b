"""What the execution workflow and its activities pass each other: small, serialisable values."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aegis_ray.core.models.execution import ExecutionState

# How long an execution may wait for capacity before it fails.
PLACEMENT_DEADLINE_S = 3600.0


class Outcome(StrEnum):
    """How one attempt ended. A LOST attempt (its node, agent or placement group went away)
    is retried while the manifest's max_retries allow."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    LOST = "LOST"


@dataclass
class AttemptInput:
    execution_id: str


@dataclass
class AttemptResult:
    """Where the execution stands after an attempt: ended (`state` terminal), or `retry`: the
    lost attempt was recorded and the row is PENDING on its next attempt."""

    execution_id: str
    attempt: int
    state: ExecutionState
    retry: bool = False


@dataclass
class Abort:
    """End the execution now (cancelled, or an activity gave up): whatever attempt it is on."""

    execution_id: str
    state: ExecutionState
    reason: str
