"""Execution states and the transitions allowed between them.

PENDING -> SCHEDULED -> STARTING -> RUNNING -> SUCCEEDED | FAILED | CANCELLED | TIMED_OUT.
A move back to PENDING is the retry of an attempt that was lost (node died, placement removed).
"""

from __future__ import annotations

from enum import StrEnum


class ExecutionState(StrEnum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


S = ExecutionState

TERMINAL_STATES: frozenset[ExecutionState] = frozenset(
    {S.SUCCEEDED, S.FAILED, S.CANCELLED, S.TIMED_OUT}
)

# Not finished yet, in lifecycle order: what reconcilers watch and compare-and-sets expect.
ACTIVE_STATES: tuple[ExecutionState, ...] = tuple(s for s in S if s not in TERMINAL_STATES)
# An attempt holds (or is about to hold) a node: what counts against that node's load.
PLACED_STATES: tuple[ExecutionState, ...] = (S.SCHEDULED, S.STARTING, S.RUNNING)

ALLOWED_TRANSITIONS: dict[ExecutionState, frozenset[ExecutionState]] = {
    S.PENDING: frozenset({S.SCHEDULED, S.CANCELLED, S.FAILED}),
    S.SCHEDULED: frozenset({S.STARTING, S.PENDING, S.FAILED, S.CANCELLED, S.TIMED_OUT}),
    S.STARTING: frozenset({S.RUNNING, S.PENDING, S.FAILED, S.CANCELLED, S.TIMED_OUT}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.TIMED_OUT, S.PENDING}),
    **{state: frozenset() for state in TERMINAL_STATES},
}


def is_terminal(state: ExecutionState | str) -> bool:
    """True for states an execution never leaves."""
    return ExecutionState(state) in TERMINAL_STATES


def can_transition(current: ExecutionState | str, new: ExecutionState | str) -> bool:
    """Whether an execution in `current` may move to `new` (same-state writes are not moves)."""
    return ExecutionState(new) in ALLOWED_TRANSITIONS[ExecutionState(current)]
