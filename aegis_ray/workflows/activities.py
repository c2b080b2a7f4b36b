"""The execution workflow's activities: one attempt from placement to its end, and abort.

`run_attempt` is the whole hot path in one activity, so Temporal dispatches it once per attempt:
place (a placement group, waiting with the reason shown), launch (the node agent on the node
that holds the bundle), follow (log batches into PostgreSQL until the container ends), tear down
(container, group) and record the end. Every step is idempotent for the attempt: the group is
found by name, the agent takes over the container the attempt already has, and logs resume at
the last stored sequence number, so a retry after a worker crash picks up where it stopped.
Every state change is a compare-and-set on the execution row (`ExecutionStore.transition`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from ray.exceptions import ActorUnavailableError, RayActorError, RayError, RayTaskError
from ray.util.placement_group import PlacementGroup
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from aegis_ray.adapters import metrics
from aegis_ray.adapters.docker.container import LaunchError
from aegis_ray.adapters.openbao.store import SecretStore
from aegis_ray.adapters.postgres.db import StoreOutage, ride_out
from aegis_ray.adapters.postgres.executions import ExecutionStore
from aegis_ray.adapters.postgres.nodes import NodeStore
from aegis_ray.adapters.postgres.records import ExecutionRecord
from aegis_ray.adapters.ray import placement as groups
from aegis_ray.adapters.ray.cluster_state import ClusterView, live_cluster
from aegis_ray.core.log_quota import LogQuota
from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.models.execution import (
    ACTIVE_STATES,
    PLACED_STATES,
    TERMINAL_STATES,
    ExecutionState,
    can_transition,
)
from aegis_ray.core.models.loading import parse_agent
from aegis_ray.core.naming import PLACED_SIGNAL, placement_group_name
from aegis_ray.core.placement.demand import Demand, bundle_of, demand_of
from aegis_ray.core.placement.fit import after_loss, plan
from aegis_ray.node_agent.actor import ensure_node_agent
from aegis_ray.node_agent.agent import Batch
from aegis_ray.workflows.container import container_spec
from aegis_ray.workflows.messages import (
    PLACEMENT_DEADLINE_S,
    Abort,
    AttemptInput,
    AttemptResult,
    Outcome,
)
from aegis_ray.workflows.secrets import SecretsRefused, delivery

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

S = ExecutionState
# How old a cluster view the first placement try may use (see `_place`).
PLAN_REUSE_S = 0.5
# While waiting for capacity, refresh the "why is it pending" text this often.
REASON_REFRESH_S = 2.0
# A bundle that no live node could ever hold fails after this long (nodes may be joining).
NEVER_FITS_GRACE_S = 30.0
STOP_GRACE_S = 3.0
# A follow call returns after this long without news: the activity heartbeats in between (and
# learns of a cancellation), and nothing else runs per sleeping agent.
FOLLOW_WAIT_S = 5.0
FOLLOW_BATCH = 1000
# After a stop (cancel), how long the last lines may take to arrive before teardown.
DRAIN_S = 10.0
HEARTBEAT = timedelta(seconds=30)
HEARTBEAT_EVERY_S = 5.0
# Extra time a node agent call may go unanswered before the node is checked (see `_call`).
AGENT_SILENCE_S = 30.0
# Ray errors other than an unavailable actor, in a row with the node alive, before giving up.
ODD_RAY_ERRORS = 30


@dataclass
class Placed:
    """Where an attempt's bundle is: its group, the Ray node and the aegis node."""

    group: PlacementGroup
    group_name: str
    ray_node_id: str
    node_id: str
    implicit_head: bool


@dataclass
class Ended:
    outcome: Outcome
    reason: str = ""
    exit_code: int | None = None
    node_lost: bool = False


class AttemptLost(Exception):
    """The node (`node_lost`), or the attempt's container or placement group, went away."""

    def __init__(self, reason: str, *, node_lost: bool = False) -> None:
        super().__init__(reason)
        self.node_lost = node_lost


class Superseded(Exception):
    """The row moved on without this activity (cancelled, or ended by the reconciler)."""


# The type of the error an attempt ends with when PostgreSQL stayed away past the bound: the
# workflow then records the message as the reason, not as an internal error.
STORE_OUTAGE = "StoreOutage"


@dataclass(frozen=True)
class Limits:
    """What the operator configured (Settings): the outage ridden out, the log quota."""

    store_outage_s: float = 300.0
    log_line_max_bytes: int = 64 << 10
    log_max_bytes: int = 64 << 20


class ExecutionActivities:
    def __init__(
        self,
        store: ExecutionStore,
        nodes: NodeStore,
        temporal: Client | None = None,
        secrets: SecretStore | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.nodes = nodes
        self.secrets = secrets
        self.limits = limits or Limits()
        # To tell the workflow where its attempt was placed (Temporal UI: search by node).
        self.temporal = temporal
        # Node agent handles by node: looking one up is a round trip to Ray's GCS.
        self._agents: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _db(self, fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """`fn(...)` against PostgreSQL, riding out an outage up to the configured bound
        (heartbeating meanwhile): the attempt waits, its container keeps running."""
        return await ride_out(
            lambda: fn(*args, **kwargs), bound_s=self.limits.store_outage_s, on_wait=_heartbeat
        )

    async def _load(self, execution_id: str) -> tuple[ExecutionRecord, AgentManifest]:
        rec = await self._db(self.store.get, execution_id, tenant_id=None)
        if rec is None:
            raise ApplicationError(f"execution {execution_id} not found", non_retryable=True)
        return rec, parse_agent(rec.manifest, source=f"execution {execution_id}")

    # -- the attempt ----------------------------------------------------------------------

    @activity.defn(name="run_attempt")
    async def run_attempt(self, inp: AttemptInput) -> AttemptResult:
        """Run the execution's current attempt to its end (see the module docstring)."""
        with _outage_as_reason():
            return await self._run_attempt(inp)

    async def _run_attempt(self, inp: AttemptInput) -> AttemptResult:
        rec, manifest = await self._load(inp.execution_id)
        eid, attempt = inp.execution_id, rec.attempt
        if rec.state in TERMINAL_STATES:
            return AttemptResult(eid, attempt, rec.state)
        try:
            placed = await self._place(rec, manifest)
        except AttemptLost as lost:
            return await self._end(rec, _lost_attempt(lost))
        except Superseded:
            return await self._as_is(eid, attempt)
        if isinstance(placed, str):
            return await self._end(rec, Ended(Outcome.FAILED, await self._unplaceable(rec, placed)))
        try:
            ended = await self._launch_and_follow(rec, manifest, placed)
        except asyncio.CancelledError:
            if _cancel_requested():
                await self._stop_and_drain(eid, attempt, placed)
                await self._teardown(eid, attempt, placed)
            # Otherwise Temporal gave this try up (its heartbeat timed out while Temporal was
            # away, or the worker shuts down): the container runs on, the next try takes over.
            raise
        except AttemptLost as lost:
            ended = _lost_attempt(lost)
        except Superseded:
            await self._teardown(eid, attempt, placed)
            return await self._as_is(eid, attempt)
        # The end is recorded first: watchers learn it without waiting for the removal.
        result = await self._end(rec, ended)
        await self._teardown(eid, attempt, placed)
        return result

    async def _unplaceable(self, rec: ExecutionRecord, why: str) -> str:
        """Why the attempt cannot be placed; after a lost attempt, that loss first."""
        if rec.attempt <= 1:
            return why
        records = await self._db(self.store.attempts, rec.id)
        before = next((a for a in records if a.attempt == rec.attempt - 1), None)
        if before is None or before.outcome != Outcome.LOST:
            return why
        return after_loss(before.reason or "", rec.attempt - 1, why)

    async def _as_is(self, eid: str, attempt: int) -> AttemptResult:
        now = await self._db(self.store.get, eid, tenant_id=None)
        return AttemptResult(eid, attempt, now.state if now is not None else S.FAILED)

    async def _place(self, rec: ExecutionRecord, manifest: AgentManifest) -> Placed | str:
        """The attempt's placement group, ready; or why it will not be (the execution fails)."""
        eid, attempt = str(rec.id), rec.attempt
        if rec.state != S.PENDING:  # placed by an earlier try of this activity
            found = await self._placed_before(rec)
            if found is not None:
                return found
            raise AttemptLost(
                f"placement group of attempt {attempt} is gone (its node was lost, or the Ray"
                " head restarted)"
            )
        demand = demand_of(manifest)
        # The view the submission was planned with, moments ago in this process, will do for
        # the first try; the wait below reads a fresh one each round.
        view = await self._db(live_cluster, self.nodes, max_age_s=PLAN_REUSE_S)
        bundle = view.bundle_for(bundle_of(demand))
        base = placement_group_name(eid, attempt)
        # Only ready nodes that could hold it, never a drained, down or unfit one; when that set
        # changes while we wait (a node drained, lost or joined), the group is made anew.
        eligible = _eligible(demand, view)
        generation = 0
        name = base
        pg = await asyncio.to_thread(groups.get_or_create, name, bundle, view, eligible)
        ready = groups.ready_future(pg)
        started = time.monotonic()
        never_since: float | None = None
        last_reason = 0.0
        try:
            while not await groups.wait_ready(ready, 1.0):
                activity.heartbeat()
                if time.monotonic() - last_reason < REASON_REFRESH_S:
                    continue
                last_reason = time.monotonic()
                view = await self._db(live_cluster, self.nodes)
                result = plan(demand, view.nodes)
                await self._db(self.store.set_reason, eid, result.summary(), attempt=attempt)
                if time.monotonic() - started > PLACEMENT_DEADLINE_S:
                    await asyncio.to_thread(groups.remove, pg)
                    return f"no capacity within {PLACEMENT_DEADLINE_S:.0f}s: {result.summary()}"
                now_eligible = _eligible(demand, view)
                if now_eligible != eligible and not view.implicit_head:
                    await asyncio.to_thread(groups.remove, pg)
                    eligible, generation = now_eligible, generation + 1
                    name = f"{base}.{generation}"
                    pg = await asyncio.to_thread(groups.get_or_create, name, bundle, view, eligible)
                    ready = groups.ready_future(pg)
                if result.feasible:
                    never_since = None
                    continue
                never_since = never_since or time.monotonic()
                if time.monotonic() - never_since > NEVER_FITS_GRACE_S:
                    await asyncio.to_thread(groups.remove, pg)
                    return result.summary()
        except asyncio.CancelledError:
            await asyncio.to_thread(groups.remove, pg)
            raise
        assert pg is not None
        metrics.PLACEMENT_WAIT.observe(time.monotonic() - started)
        ray_node_id = await asyncio.to_thread(groups.bundle_node, pg)
        node_id = _aegis_node_id(view, ray_node_id)
        moved = await self._db(
            self.store.transition,
            eid,
            to=S.SCHEDULED,
            expected=[S.PENDING],
            attempt=attempt,
            node_id=node_id,
            message=f"placed on node {node_id}",
        )
        if moved is None:  # cancelled or finished meanwhile: give the capacity back
            await asyncio.to_thread(groups.remove, pg)
            raise Superseded()
        await self._db(
            self.store.start_attempt,
            eid,
            attempt,
            node_id=node_id,
            ray_node_id=ray_node_id,
            placement_group=name,
        )
        # For the Temporal UI only: not worth delaying the launch for.
        self._background(self._announce(node_id))
        return Placed(pg, name, ray_node_id, node_id, view.implicit_head)

    def _background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    async def _announce(self, node_id: str) -> None:
        """Signal the workflow the attempt's node; the UI's view only, so a failure is logged."""
        if self.temporal is None:
            return
        info = activity.info()
        if info.workflow_id is None:  # a standalone activity: no workflow to tell
            return
        handle = self.temporal.get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
        try:
            await handle.signal(PLACED_SIGNAL, node_id)
        except RPCError as err:
            log.warning("could not tell workflow %s its node: %s", info.workflow_id, err)

    async def _placed_before(self, rec: ExecutionRecord) -> Placed | None:
        records = await self._db(self.store.attempts, rec.id)
        record = next((a for a in records if a.attempt == rec.attempt), None)
        if record is None or not record.placement_group:
            return None
        try:
            pg = await asyncio.to_thread(groups.find, record.placement_group)
        except (RayError, ValueError) as err:  # Ray no longer knows it (a restarted head)
            log.info("placement group %s not found: %s", record.placement_group, err)
            return None
        if pg is None:
            return None
        view = await self._db(live_cluster, self.nodes)
        return Placed(
            pg,
            record.placement_group,
            record.ray_node_id or "",
            record.node_id or "",
            view.implicit_head,
        )

    async def _launch_and_follow(
        self, rec: ExecutionRecord, manifest: AgentManifest, placed: Placed
    ) -> Ended:
        eid, attempt = str(rec.id), rec.attempt
        agent = await self._agent(placed)
        state = rec.state if rec.state != S.PENDING else S.SCHEDULED
        if state in (S.SCHEDULED, S.STARTING):
            try:
                secrets = await delivery(
                    self.secrets,
                    rec.tenant_id,
                    manifest,
                    waiting=lambda why: self._db(self.store.set_reason, eid, why, attempt=attempt),
                )
            except SecretsRefused as refused:  # before any container starts
                return Ended(Outcome.FAILED, refused.reason)
            spec = container_spec(
                manifest, eid, attempt, placement_group_id=placed.group.id.hex(), secrets=secrets
            )
            # STARTING is recorded while the agent already creates the container.
            launch = asyncio.ensure_future(self._call(placed, agent, "start", spec))
            if state == S.SCHEDULED:
                try:
                    await self._db(
                        self.store.transition,
                        eid,
                        to=S.STARTING,
                        expected=[S.SCHEDULED],
                        attempt=attempt,
                        node_id=placed.node_id,
                        message="starting container",
                    )
                except BaseException:
                    launch.cancel()
                    raise
            try:
                container_id = await launch
            except LaunchError as err:
                # Ray re-raises the actor's exception wrapped; the original is its cause.
                cause = getattr(err, "cause", None) or err
                code = getattr(cause, "code", "start_failed")
                return Ended(Outcome.FAILED, f"{code}: {getattr(cause, 'message', cause)}")
            moved = await self._db(
                self.store.transition,
                eid,
                to=S.RUNNING,
                expected=[S.STARTING],
                attempt=attempt,
                node_id=placed.node_id,
                message=f"container {container_id[:12]} running",
            )
            if moved is None:  # cancelled meanwhile
                raise Superseded()
            _count_running(moved)
        return await self._follow(eid, attempt, placed, manifest)

    async def _follow(
        self, eid: str, attempt: int, placed: Placed, manifest: AgentManifest
    ) -> Ended:
        cursor = await self._db(self.store.last_log_seq, eid, attempt)
        quota = await self._quota(eid)
        while True:
            batch = await self._next_batch(eid, attempt, placed, cursor, FOLLOW_WAIT_S)
            cursor = await self._store_lines(eid, attempt, batch, cursor, quota)
            activity.heartbeat()
            if batch.done:
                await self._record_dropped(eid, attempt, quota)
                return _ended(batch, manifest.spec.execution.timeout)

    async def _quota(self, eid: str) -> LogQuota:
        limits = self.limits
        used = await self._db(self.store.log_bytes, eid)
        return LogQuota(limits.log_line_max_bytes, limits.log_max_bytes, used=used)

    async def _record_dropped(self, eid: str, attempt: int, quota: LogQuota) -> None:
        """Tell the user, in the execution's events, what of its output was not stored."""
        summary = quota.summary()
        if summary:
            with contextlib.suppress(StoreOutage):
                await self._db(
                    self.store.add_event, eid, kind="info", message=summary, attempt=attempt
                )

    async def _next_batch(
        self, eid: str, attempt: int, placed: Placed, cursor: int, wait_s: float
    ) -> Batch:
        agent = await self._agent(placed)
        batch: Batch = await self._call(
            placed, agent, "follow", eid, attempt, cursor, FOLLOW_BATCH, wait_s
        )
        return batch

    async def _store_lines(
        self, eid: str, attempt: int, batch: Batch, cursor: int, quota: LogQuota
    ) -> int:
        """Store the batch (as the quota admits it); the new cursor. While PostgreSQL is away
        this waits: the lines stay with the node agent (bounded) until they are stored."""
        if not batch.lines:
            return cursor
        was_full = quota.full
        rows = [
            (ln.seq, ln.ts, ln.stream, text)
            for ln in batch.lines
            if (text := quota.admit(ln.text)) is not None
        ]
        if rows:
            stored = await self._db(self.store.append_logs, eid, attempt, rows)
            metrics.LOG_LINES_STORED.inc(stored)
        if quota.full and not was_full:
            await self._db(
                self.store.add_event,
                eid,
                kind="info",
                message=f"log quota of {quota.total_max} bytes reached: further output is"
                " counted, not stored (AEGIS_LOG_MAX_BYTES)",
                attempt=attempt,
            )
        return batch.lines[-1].seq

    async def _stop_and_drain(self, eid: str, attempt: int, placed: Placed) -> None:
        """Stop the container and keep what it printed until it ended (bounded)."""
        with contextlib.suppress(Exception):
            agent = await self._agent(placed)
            await asyncio.wait_for(
                self._call(placed, agent, "stop", eid, attempt, STOP_GRACE_S), STOP_GRACE_S + 10
            )
            cursor = await self.store.last_log_seq(eid, attempt)
            quota = await self._quota(eid)
            deadline = time.monotonic() + DRAIN_S
            while time.monotonic() < deadline:
                batch = await asyncio.wait_for(
                    self._next_batch(eid, attempt, placed, cursor, 1.0), 10
                )
                cursor = await self._store_lines(eid, attempt, batch, cursor, quota)
                if batch.done:
                    return

    async def _teardown(self, eid: str, attempt: int, placed: Placed) -> None:
        """Remove the container (through its agent, if the node is still there) and the group."""
        if await asyncio.to_thread(groups.node_alive, placed.ray_node_id):
            try:
                agent = await self._agent(placed)
                await asyncio.wait_for(agent.remove.remote(eid, attempt), 30)
            except Exception as err:  # the agent sweeps it when the group is gone
                log.warning("removing the container of %s/%d failed: %s", eid, attempt, err)
        await asyncio.to_thread(groups.remove, placed.group)

    async def _agent(self, placed: Placed, *, fresh: bool = False) -> Any:
        agent = None if fresh else self._agents.get(placed.node_id)
        if agent is None:
            ray_node_id = placed.ray_node_id if placed.implicit_head else None
            agent = await asyncio.to_thread(
                ensure_node_agent, placed.node_id, ray_node_id=ray_node_id
            )
            self._agents[placed.node_id] = agent
        return agent

    async def _call(self, placed: Placed, agent: Any, method: str, *args: Any) -> Any:
        """Call the node agent, riding out its restarts; AttemptLost if the node is gone.

        Heartbeats while the call runs (an image pull may take minutes). A call that gets no
        answer for `AGENT_SILENCE_S` past what it may take (a node cut off before Ray declares
        it dead) is asked again, after checking whether the node is gone.
        """
        odd = 0  # other Ray errors in a row, the node still there: asked again a few times
        while True:
            call = asyncio.ensure_future(getattr(agent, method).remote(*args))
            may_take = _may_take(method, args)
            silence = None if may_take is None else AGENT_SILENCE_S + may_take
            try:
                return await _heartbeating(call, silence)
            except (ActorUnavailableError, RayActorError, TimeoutError, RayError) as err:
                if isinstance(err, RayTaskError) and not isinstance(err, RayActorError):
                    raise  # the agent's own answer (a launch error): not the node's trouble
                # Any other RayError: Ray may have lost track of the actor, node or group.
                lost = await asyncio.to_thread(_lost, placed)
                if lost is not None:
                    raise lost from err
                usual = isinstance(err, ActorUnavailableError | RayActorError | TimeoutError)
                odd = 0 if usual else odd + 1
                if odd > ODD_RAY_ERRORS:
                    raise
                log.info("node agent on %s unavailable (%r); retrying", placed.node_id, err)
            finally:
                call.cancel()
            activity.heartbeat()
            await asyncio.sleep(1.0)
            agent = await self._agent(placed, fresh=True)

    # -- the end --------------------------------------------------------------------------

    async def _end(self, rec: ExecutionRecord, ended: Ended) -> AttemptResult:
        """Record how the attempt ended: a retry (lost, retries left) or the execution's end."""
        eid, attempt = str(rec.id), rec.attempt
        if ended.outcome == Outcome.LOST and attempt <= rec.max_retries:
            await self._db(
                self.store.end_attempt, eid, attempt, outcome=Outcome.LOST, reason=ended.reason
            )
            moved = await self._db(
                self.store.transition,
                eid,
                to=S.PENDING,
                expected=list(PLACED_STATES),
                attempt=attempt,
                new_attempt=True,
                reason=ended.reason,
                message=f"attempt {attempt} lost ({ended.reason}); retrying",
            )
            if moved is not None:
                return AttemptResult(eid, attempt, S.PENDING, retry=True)
        else:
            reason = ended.reason
            if ended.outcome == Outcome.LOST:
                what = "node lost" if ended.node_lost else "attempt lost"
                reason = f"{what}: {reason} (no retries left)"
            state = S.FAILED if ended.outcome == Outcome.LOST else S(ended.outcome.value)
            await self._finish(eid, attempt, state, reason, ended.exit_code)
        return await self._as_is(eid, attempt)

    async def _finish(
        self,
        eid: str,
        attempt: int | None,
        state: ExecutionState,
        reason: str,
        exit_code: int | None = None,
    ) -> None:
        moved = await self._db(
            self.store.transition,
            eid,
            to=state,
            expected=[s for s in ACTIVE_STATES if can_transition(s, state)],
            attempt=attempt,
            exit_code=exit_code,
            reason=reason or None,
            message=reason or state.value.lower(),
        )
        if moved is not None:
            await self._db(
                self.store.end_attempt, eid, moved.attempt, outcome=state.value, reason=reason
            )
            count_finished(moved)

    @activity.defn(name="abort")
    async def abort(self, a: Abort) -> None:
        """End the execution on its current attempt: container and group removed, row final."""
        with _outage_as_reason():
            await self._abort(a)

    async def _abort(self, a: Abort) -> None:
        rec, _ = await self._load(a.execution_id)
        if rec.state in TERMINAL_STATES:
            return
        placed = await self._placed_before(rec)
        if placed is not None:
            await self._teardown(a.execution_id, rec.attempt, placed)
        else:  # interrupted around placement: a group may exist though it was never recorded
            name = placement_group_name(a.execution_id, rec.attempt)
            await asyncio.to_thread(groups.remove_named, name)
        await self._finish(a.execution_id, None, a.state, a.reason)

    def all(self) -> list[Any]:
        return [self.run_attempt, self.abort]


def _cancel_requested() -> bool:
    """Whether the activity is cancelled because the execution is (not for Temporal's own
    reasons: a heartbeat timeout, this worker shutting down, the workflow gone)."""
    details = activity.cancellation_details() if activity.in_activity() else None
    return details is None or details.cancel_requested


def _heartbeat() -> None:
    if activity.in_activity():
        activity.heartbeat()


@contextlib.contextmanager
def _outage_as_reason() -> Any:
    """PostgreSQL away past the bound ends the activity for good, the outage as its reason."""
    try:
        yield
    except StoreOutage as err:
        raise ApplicationError(str(err), type=STORE_OUTAGE, non_retryable=True) from err


async def _heartbeating(call: asyncio.Future[Any], silence_s: float | None) -> Any:
    """The call's result, telling Temporal every few seconds that the activity is alive."""
    started = time.monotonic()
    while True:
        done, _ = await asyncio.wait({call}, timeout=HEARTBEAT_EVERY_S)
        if done:
            return call.result()
        activity.heartbeat()
        if silence_s is not None and time.monotonic() - started > silence_s:
            raise TimeoutError(f"no answer from the node agent in {silence_s:g}s")


def _may_take(method: str, args: tuple[Any, ...]) -> float | None:
    """How long a node agent call may rightly take: a follow its wait, a start its pull."""
    if method == "follow":
        return float(args[-1])
    if method == "start":
        return None  # an image pull has its own deadline in the agent
    return STOP_GRACE_S


def _count_running(rec: ExecutionRecord) -> None:
    metrics.STARTED.inc(tenant=rec.tenant_id)
    if rec.started_at is not None:
        metrics.SUBMIT_TO_RUNNING.observe((rec.started_at - rec.created_at).total_seconds())


def count_finished(rec: ExecutionRecord) -> None:
    """Count an execution that has just ended (the compare-and-set that ended it won)."""
    metrics.FINISHED.inc(state=rec.state.value, tenant=rec.tenant_id)


def _ended(batch: Batch, timeout_s: float) -> Ended:
    if batch.timed_out:
        return Ended(Outcome.TIMED_OUT, f"timed out after {timeout_s:g}s", batch.exit_code)
    if batch.gone is not None:
        raise AttemptLost(batch.gone)
    if batch.exit_code == 0:
        return Ended(Outcome.SUCCEEDED, exit_code=0)
    why = batch.error or f"exit code {batch.exit_code}"
    if batch.oom_killed:
        why += " (killed: out of memory)"
    return Ended(Outcome.FAILED, why, batch.exit_code)


def _lost(placed: Placed) -> AttemptLost | None:
    """Why the attempt is lost, if it is: its node died or its group is gone."""
    try:
        state = groups.state(placed.group)
    except (RayError, ValueError) as err:  # e.g. "Failed to look up placement group"
        return AttemptLost(f"placement group of the attempt is gone: {err}")
    if not groups.node_alive(placed.ray_node_id) or state == "RESCHEDULING":
        return AttemptLost(f"node {placed.node_id} lost", node_lost=True)
    if state in (None, "REMOVED"):
        return AttemptLost("placement group removed")
    return None


def _lost_attempt(lost: AttemptLost) -> Ended:
    return Ended(Outcome.LOST, str(lost), node_lost=lost.node_lost)


def _eligible(demand: Demand, view: ClusterView) -> list[str]:
    result = plan(demand, view.nodes)
    return sorted(result.fits_now + result.fits_later)


def _aegis_node_id(view: ClusterView, ray_node_id: str) -> str:
    for n in view.nodes:
        if n.ray_node_id == ray_node_id:
            return str(n.node_id)
    return ray_node_id
