"""The lifecycle of one execution as a Temporal workflow: place, run, retry lost attempts, finish.

Only deterministic control flow lives here; every side effect (Ray, Docker, PostgreSQL) is an
activity in ``activities.py``. Activities are referred to by name so that this module imports
nothing outside the Temporal sandbox's comfort zone.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from aegis_ray.workflows.types import (
        OUTCOME_FAILED,
        OUTCOME_LOST,
        OUTCOME_SUCCEEDED,
        OUTCOME_TIMED_OUT,
        PLACEMENT_DEADLINE_S,
        AttemptPlan,
        AttemptRef,
        Cleanup,
        Finish,
        Outcome,
        Placement,
        RunInput,
        pg_name,
    )

WORKFLOW_NAME = "aegis.execution"

# Bookkeeping activities talk to PostgreSQL and Ray's GCS only: short, retried on their own.
_QUICK = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=5), maximum_attempts=20),
}
# How long an execution may wait for capacity before it fails.
HEARTBEAT = timedelta(seconds=30)
_TERMINAL_BY_OUTCOME = {
    OUTCOME_SUCCEEDED: "SUCCEEDED",
    OUTCOME_FAILED: "FAILED",
    OUTCOME_TIMED_OUT: "TIMED_OUT",
    OUTCOME_LOST: "FAILED",
}


@workflow.defn(name=WORKFLOW_NAME)
class ExecutionWorkflow:
    @workflow.run
    async def run(self, execution_id: str) -> str:
        attempt = 0  # not known until `prepare` has read the row
        placement: Placement | None = None
        try:
            plan: AttemptPlan = await workflow.execute_activity(
                "prepare", execution_id, result_type=AttemptPlan, **_QUICK
            )
            if plan.terminal:
                return "ALREADY_FINISHED"
            attempt = plan.attempt
            while True:
                placement = None
                placement = await workflow.execute_activity(
                    "place",
                    AttemptRef(execution_id, attempt),
                    result_type=Placement,
                    start_to_close_timeout=timedelta(seconds=PLACEMENT_DEADLINE_S + 60),
                    heartbeat_timeout=HEARTBEAT,
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
                if not placement.placed:
                    outcome = Outcome(OUTCOME_FAILED, reason=placement.reason)
                else:
                    outcome = await workflow.execute_activity(
                        "run_attempt",
                        RunInput(
                            execution_id,
                            attempt,
                            placement.placement_group,
                            placement.ray_node_id,
                            placement.node_id,
                            plan.timeout_s,
                            placement.bundle or {},
                        ),
                        result_type=Outcome,
                        start_to_close_timeout=timedelta(seconds=plan.timeout_s + 300),
                        heartbeat_timeout=HEARTBEAT,
                        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                        retry_policy=RetryPolicy(maximum_attempts=3),
                    )
                    await self._cleanup(execution_id, attempt, placement, outcome.container_removed)
                if outcome.kind == OUTCOME_LOST and attempt <= plan.max_retries:
                    await workflow.execute_activity(
                        "retry", Finish(execution_id, attempt, "PENDING", outcome.reason), **_QUICK
                    )
                    attempt += 1
                    continue
                state = _TERMINAL_BY_OUTCOME[outcome.kind]
                reason = outcome.reason
                if outcome.kind == OUTCOME_LOST:
                    reason = f"node lost: {reason} (no retries left)"
                await workflow.execute_activity(
                    "finish",
                    Finish(execution_id, attempt, state, reason, outcome.exit_code),
                    **_QUICK,
                )
                return state
        except (asyncio.CancelledError, ActivityError) as err:
            # Cancellation reaches the workflow either directly or, once the running activity
            # has stopped the container, as that activity's cancelled error.
            cancelled = isinstance(err, asyncio.CancelledError) or isinstance(
                err.cause, CancelledError
            )
            if placement is None and attempt:
                # Interrupted around placement: the group may exist though we never heard of it.
                placement = Placement(execution_id, attempt, True, pg_name(execution_id, attempt))
            if placement is not None and placement.placed:
                await self._cleanup(execution_id, attempt, placement)
            if cancelled:
                state, reason = "CANCELLED", "cancelled by request"
            else:
                # An activity gave up after its retries: end the execution rather than leave
                # it hanging in a non-terminal state.
                cause = err.cause.message if err.cause is not None else str(err)
                state, reason = "FAILED", f"internal error: {cause}"
            # Whatever attempt the row is on by now (a cancel may race a retry).
            final = Finish(execution_id, attempt, state, reason, any_attempt=True)
            await workflow.execute_activity("finish", final, **_QUICK)
            return state

    async def _cleanup(
        self, execution_id: str, attempt: int, placement: Placement, removed: bool = False
    ) -> None:
        await workflow.execute_activity(
            "cleanup",
            Cleanup(
                execution_id, attempt, placement.placement_group, placement.ray_node_id, removed
            ),
            **_QUICK,
        )
