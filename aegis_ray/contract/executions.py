"""Executions as the API shows them: the record, its attempts, events, log lines, watch items,
and the placement plan that explains where a manifest could run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from aegis_ray.contract.body import Body, Timestamp
from aegis_ray.core.models.execution import ExecutionState, is_terminal

# The body of a submission or a plan: an Agent manifest (aegis_ray/core/models/agent.py,
# `aegis schema agent`) as YAML text or as JSON; the server reads either by its content.
MANIFEST_MEDIA_TYPES = {"yaml": "application/yaml", "json": "application/json"}


class Attempt(Body):
    execution_id: str
    attempt: int
    node_id: str | None
    ray_node_id: str | None
    placement_group: str | None
    started_at: Timestamp | None
    ended_at: Timestamp | None
    outcome: str | None = Field(description="how the attempt ended; null while it runs")
    reason: str | None


class Execution(Body):
    """One execution: its manifest, where it is in its life, and how it ended."""

    id: str
    tenant_id: str
    name: str | None
    manifest: dict[str, Any] = Field(description="the Agent manifest, as validated")
    state: ExecutionState
    attempt: int
    max_retries: int
    timeout_s: float | None
    version: int
    reason: str | None = Field(description="why it is in its state (waiting, failed, ...)")
    node_id: str | None
    exit_code: int | None
    workflow_id: str | None
    created_at: Timestamp
    updated_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    attempts: list[Attempt] | None = Field(
        default=None, description="every attempt (GET of one execution only)"
    )
    waiting: str | None = Field(
        default=None, description="at submission: why it cannot be placed right now"
    )

    @property
    def finished(self) -> bool:
        """True once the execution has ended (it never changes again)."""
        return is_terminal(self.state)


class ExecutionPage(Body):
    items: list[Execution]
    next_before: str | None = Field(description="cursor of the next (older) page, if any")


class Event(Body):
    """A state change or a note about an execution."""

    id: int
    execution_id: str
    ts: Timestamp
    attempt: int | None
    kind: str
    from_state: ExecutionState | None
    to_state: ExecutionState | None
    message: str
    node_id: str | None


class EventPage(Body):
    items: list[Event]


class LogLine(Body):
    """One line the agent's container wrote."""

    id: int
    execution_id: str
    attempt: int
    ts: Timestamp
    stream: Literal["stdout", "stderr"]
    line: str


class LogPage(Body):
    items: list[LogLine]


class End(Body):
    """The last item of a watch: the execution's final state."""

    state: ExecutionState | None


class WatchItem(Body):
    """One item of a watch stream: exactly one of event, log and end (the last item)."""

    event: Event | None = None
    log: LogLine | None = None
    end: End | None = None

    @property
    def item(self) -> Event | LogLine | End:
        which = self.event or self.log or self.end
        assert which is not None, "a watch item carries an event, a log line or the end"
        return which


class FollowEnd(Body):
    """The last line of a `follow=true` events or logs stream."""

    end: Literal[True]
    state: ExecutionState | None


class Cancelled(Body):
    id: str
    state: ExecutionState
    cancel_requested: bool


class PlanReason(Body):
    check: str = Field(description="role, status, tag, cpu, memory, disk, gpu or slots")
    message: str
    needed: int | float | None = None
    available: int | float | None = None


class NodePlan(Body):
    node_id: str
    reasons: list[PlanReason]


class PlanResult(Body):
    """Where a manifest could run: nodes that fit now, later, and why the others never do."""

    feasible: bool
    summary: str
    fits_now: list[str]
    fits_later: list[str]
    nodes: list[NodePlan]
    nodes_omitted: int | None = Field(
        default=None, description="nodes cut to fit a gRPC error's metadata"
    )
