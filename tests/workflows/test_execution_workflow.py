"""The execution workflow's control flow on a real Temporal dev server with stub activities: no
Ray, Docker or PostgreSQL. Each test scripts what `run_attempt` answers, then checks what the
workflow returned and which activities it called, with what, in which order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from aegis_ray.adapters.temporal.dev_server import TemporalDevServer
from aegis_ray.core.models.execution import ExecutionState as S
from aegis_ray.workflows.execution import ExecutionWorkflow
from aegis_ray.workflows.messages import Abort, AttemptInput, AttemptResult

# 20000-32767 like every test port (see tests/e2e/conftest.py); no other module uses 2673x.
PORT, UI_PORT = 26733, 26734
EID = "exec-0001"
# Bounds on waits: a workflow here ends in well under a second unless something is wrong.
WAIT_S = 30.0

Script = Callable[[int], Awaitable[AttemptResult]]
During = Callable[[WorkflowHandle[Any, str], "Stubs"], Awaitable[None]]


@pytest.fixture(scope="module")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal dev server for this module (the binary the project uses), stopped by its pid."""
    data: Path = tmp_path_factory.mktemp("temporal")
    server = TemporalDevServer(data, port=PORT, ui_port=UI_PORT)
    try:
        yield server.start(timeout=60)
    finally:
        server.stop()


class Stubs:
    """`run_attempt` answers its n-th call (from 1) with `script(n)`; every call is logged."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.calls: list[tuple[str, object]] = []
        self.started = asyncio.Event()

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="run_attempt")
        async def run_attempt(inp: AttemptInput) -> AttemptResult:
            self.calls.append(("run_attempt", inp))
            self.started.set()
            try:
                return await self.script(len([c for c in self.calls if c[0] == "run_attempt"]))
            except asyncio.CancelledError:
                self.calls.append(("run_attempt cancelled", inp))
                raise

        @activity.defn(name="abort")
        async def abort(a: Abort) -> None:
            self.calls.append(("abort", a))

        return [run_attempt, abort]


def answering(*results: AttemptResult) -> Script:
    async def script(n: int) -> AttemptResult:
        return results[n - 1]

    return script


async def placing_until_cancelled(n: int) -> AttemptResult:
    """What a real attempt does while it waits for capacity: heartbeat, and so learn of a cancel."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.1)


async def giving_up(n: int) -> AttemptResult:
    raise ApplicationError("execution exec-0001 not found", non_retryable=True)


async def _run(address: str, script: Script, during: During | None = None) -> tuple[str, Stubs]:
    stubs = Stubs(script)
    client = await Client.connect(address)
    queue = f"test-{uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ExecutionWorkflow],
        activities=stubs.activities(),
        # As the real worker (workflows/worker.py): a cancel reaches the activity within ~1s.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
    ):
        handle = await client.start_workflow(
            ExecutionWorkflow.run, EID, id=f"wf-{uuid4()}", task_queue=queue
        )
        if during is not None:
            await during(handle, stubs)
        result = await asyncio.wait_for(handle.result(), WAIT_S)
    return result, stubs


def run(address: str, script: Script, during: During | None = None) -> tuple[str, list[Any]]:
    """The workflow's result and the activity calls, in order."""
    result, stubs = asyncio.run(_run(address, script, during))
    return result, stubs.calls


ATTEMPT = ("run_attempt", AttemptInput(EID))


def test_an_attempt_that_succeeds_ends_the_execution(temporal: str) -> None:
    result, calls = run(temporal, answering(AttemptResult(EID, 1, S.SUCCEEDED)))
    assert result == S.SUCCEEDED
    assert calls == [ATTEMPT]


def test_a_lost_attempt_with_retries_left_runs_the_next_attempt(temporal: str) -> None:
    lost = AttemptResult(EID, 1, S.PENDING, retry=True)
    result, calls = run(temporal, answering(lost, AttemptResult(EID, 2, S.SUCCEEDED)))
    assert result == S.SUCCEEDED
    assert calls == [ATTEMPT, ATTEMPT]


def test_a_lost_attempt_with_no_retries_left_fails_the_execution(temporal: str) -> None:
    result, calls = run(temporal, answering(AttemptResult(EID, 1, S.FAILED)))
    assert result == S.FAILED
    assert calls == [ATTEMPT]


def test_a_timed_out_attempt_ends_the_execution_timed_out(temporal: str) -> None:
    result, calls = run(temporal, answering(AttemptResult(EID, 1, S.TIMED_OUT)))
    assert result == S.TIMED_OUT
    assert calls == [ATTEMPT]


def test_a_cancel_during_placement_stops_the_attempt_then_aborts_cancelled(temporal: str) -> None:
    async def cancel_once_placing(handle: WorkflowHandle[Any, str], stubs: Stubs) -> None:
        await asyncio.wait_for(stubs.started.wait(), WAIT_S)
        await handle.cancel()

    result, calls = run(temporal, placing_until_cancelled, during=cancel_once_placing)
    assert result == S.CANCELLED
    # The attempt has stopped (WAIT_CANCELLATION_COMPLETED) before abort runs, and abort once.
    assert calls == [
        ATTEMPT,
        ("run_attempt cancelled", AttemptInput(EID)),
        ("abort", Abort(EID, S.CANCELLED, "cancelled by request")),
    ]


def test_an_activity_that_gives_up_fails_the_execution_with_an_internal_error(
    temporal: str,
) -> None:
    result, calls = run(temporal, giving_up)
    assert result == S.FAILED
    assert calls == [
        ATTEMPT,
        ("abort", Abort(EID, S.FAILED, "internal error: execution exec-0001 not found")),
    ]


async def _placed_on_n1(with_attributes: bool, address: str) -> tuple[str, Any]:
    """A run whose attempt tells the workflow its node, started with (as the API does where
    the server has them) or without aegis's search attributes."""
    from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

    from aegis_ray.core.naming import PLACED_SIGNAL, SEARCH_AGENT, SEARCH_NODE

    client = await Client.connect(address)
    wid = f"wf-{uuid4()}"

    async def script(n: int) -> AttemptResult:
        await client.get_workflow_handle(wid).signal(PLACED_SIGNAL, "n1")
        await asyncio.sleep(0.5)  # the signal's workflow task runs before the result's
        return AttemptResult(EID, n, S.SUCCEEDED)

    stubs = Stubs(script)
    queue = f"test-{uuid4()}"
    agent = SearchAttributeKey.for_keyword(SEARCH_AGENT)
    attributes = TypedSearchAttributes([SearchAttributePair(agent, "hello-agent")])
    async with Worker(
        client, task_queue=queue, workflows=[ExecutionWorkflow], activities=stubs.activities()
    ):
        handle = await client.start_workflow(
            ExecutionWorkflow.run,
            EID,
            id=wid,
            task_queue=queue,
            search_attributes=attributes if with_attributes else TypedSearchAttributes.empty,
        )
        result = await asyncio.wait_for(handle.result(), WAIT_S)
    described = await handle.describe()
    node = described.typed_search_attributes.get(SearchAttributeKey.for_keyword(SEARCH_NODE))
    return result, node


def test_placed_signal_records_the_node_as_a_search_attribute(temporal: str) -> None:
    result, node = asyncio.run(_placed_on_n1(True, temporal))
    assert result == S.SUCCEEDED and node == "n1"
    # Without aegis's attributes at start the workflow upserts none (it would fail its task
    # on a server that lacks them) and still ends.
    result, node = asyncio.run(_placed_on_n1(False, temporal))
    assert result == S.SUCCEEDED and node is None
