"""The lifecycle of one execution as a Temporal workflow: attempts until one ends it.

Only deterministic control flow lives here; every side effect is in `activities.py`, called by
method reference. One activity runs a whole attempt (place, launch, follow, tear down, record),
so the hot path costs one dispatch; a lost attempt comes back as `retry` and the next one runs.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from aegis_ray.core.models.execution import ExecutionState
    from aegis_ray.core.naming import PLACED_SIGNAL, SEARCH_AGENT, SEARCH_NODE, WORKFLOW_NAME
    from aegis_ray.workflows.activities import HEARTBEAT, STORE_OUTAGE, ExecutionActivities
    from aegis_ray.workflows.messages import PLACEMENT_DEADLINE_S, Abort, AttemptInput

# Longest an attempt may take: waiting for capacity, then the longest manifest timeout (7 days).
# A dead worker is noticed by the missing heartbeat long before this.
ATTEMPT_TIMEOUT = timedelta(seconds=PLACEMENT_DEADLINE_S, days=7, minutes=10)
# Retries of the attempt activity itself (a worker crash, Ray or Temporal going away): each
# retry resumes the same attempt where it stood. An outage of PostgreSQL is ridden out inside
# the activity (up to AEGIS_STORE_OUTAGE_S); this policy spans more than its default 5 minutes
# (1+2+4+8+16 s, then every 30 s), and ends the attempt only for a failure that keeps coming.
ATTEMPT_RETRIES = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=16,
    non_retryable_error_types=[STORE_OUTAGE],
)
ABORT_TIMEOUT = timedelta(seconds=60)
ABORT_RETRIES = RetryPolicy(maximum_interval=timedelta(seconds=5), maximum_attempts=20)


AGENT_KEY = SearchAttributeKey.for_keyword(SEARCH_AGENT)
NODE_KEY = SearchAttributeKey.for_keyword(SEARCH_NODE)


@workflow.defn(name=WORKFLOW_NAME)
class ExecutionWorkflow:
    @workflow.signal(name=PLACED_SIGNAL)
    def placed(self, node_id: str) -> None:
        """The running attempt was placed on `node_id` (sent by its activity): the Temporal UI
        then finds the workflow by node and shows where it runs."""
        workflow.set_current_details(f"running on node {node_id}")
        # Set at start only where the server has aegis's attributes; upserting one it does
        # not have would fail the workflow task.
        if workflow.info().typed_search_attributes.get(AGENT_KEY) is not None:
            workflow.upsert_search_attributes([NODE_KEY.value_set(node_id)])

    @workflow.run
    async def run(self, execution_id: str) -> str:
        try:
            while True:
                result = await workflow.execute_activity_method(
                    ExecutionActivities.run_attempt,
                    AttemptInput(execution_id),
                    start_to_close_timeout=ATTEMPT_TIMEOUT,
                    heartbeat_timeout=HEARTBEAT,
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    retry_policy=ATTEMPT_RETRIES,
                )
                if not result.retry:
                    return str(result.state)
        except (asyncio.CancelledError, ActivityError) as err:
            # Cancellation reaches the workflow either directly or, once the running activity
            # has stopped the container, as that activity's cancelled error.
            if isinstance(err, asyncio.CancelledError) or isinstance(err.cause, CancelledError):
                state, reason = ExecutionState.CANCELLED, "cancelled by request"
            else:
                # The activity gave up after its retries: end the execution rather than leave
                # it hanging in a non-terminal state.
                cause = getattr(err.cause, "message", None) or str(err.cause or err)
                state, reason = ExecutionState.FAILED, f"internal error: {cause}"
                if isinstance(err.cause, ApplicationError) and err.cause.type == STORE_OUTAGE:
                    reason = f"the control plane lost its database: {cause}"
            await workflow.execute_activity_method(
                ExecutionActivities.abort,
                Abort(execution_id, state, reason),
                start_to_close_timeout=ABORT_TIMEOUT,
                retry_policy=ABORT_RETRIES,
            )
            return str(state)
