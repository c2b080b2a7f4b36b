"""Small, serialisable inputs and outputs passed between the execution workflow and activities."""

from __future__ import annotations

from dataclasses import dataclass

# How long an execution may wait for capacity before it fails.
PLACEMENT_DEADLINE_S = 3600.0


def workflow_id(execution_id: object) -> str:
    """Temporal workflow id of an execution: derived, so it can always be found again."""
    return f"aegis-execution-{execution_id}"


def pg_name(execution_id: str, attempt: int) -> str:
    """Name of an attempt's placement group (regenerated groups add ".N")."""
    return f"aegis-{execution_id}-a{attempt}"


@dataclass
class AttemptPlan:
    execution_id: str
    attempt: int
    max_retries: int
    timeout_s: float
    terminal: bool  # the row is already finished: nothing to do


@dataclass
class AttemptRef:
    execution_id: str
    attempt: int


@dataclass
class Placement:
    execution_id: str
    attempt: int
    placed: bool
    placement_group: str = ""
    ray_node_id: str = ""
    node_id: str = ""
    bundle: dict[str, float] | None = None
    reason: str = ""  # why it was not placed (deadline, never fits)


@dataclass
class RunInput:
    execution_id: str
    attempt: int
    placement_group: str
    ray_node_id: str
    node_id: str
    timeout_s: float
    bundle: dict[str, float]


# What one attempt came to. "lost" attempts (node or launch actor gone) may be retried.
OUTCOME_SUCCEEDED = "succeeded"
OUTCOME_FAILED = "failed"
OUTCOME_TIMED_OUT = "timed_out"
OUTCOME_LOST = "lost"


@dataclass
class Outcome:
    kind: str
    exit_code: int | None = None
    reason: str = ""
    container_removed: bool = False  # the launch actor removed it: no sweep of the node needed


@dataclass
class Finish:
    execution_id: str
    attempt: int
    state: str
    reason: str = ""
    exit_code: int | None = None
    any_attempt: bool = False  # cancel/fail whatever attempt the row is on (cancellation races)


@dataclass
class Cleanup:
    execution_id: str
    attempt: int
    placement_group: str
    ray_node_id: str
    container_removed: bool = False
