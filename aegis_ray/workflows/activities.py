"""Activities of the execution workflow: every side effect on Ray, Docker and PostgreSQL.

Each activity is idempotent for its (execution, attempt): placement groups and launch actors
are named after them, so a retried activity finds what an earlier try created. Every state
change is a compare-and-set on the execution row (``ExecutionStore.transition``): a stale
attempt can never overwrite newer state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError
from ray.util.placement_group import (
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from temporalio import activity
from temporalio.exceptions import ApplicationError

from aegis_ray.adapters.docker.container import ContainerSpec, LaunchError, PollResult
from aegis_ray.adapters.postgres.executions import ExecutionStore
from aegis_ray.adapters.postgres.nodes import NodeStore
from aegis_ray.adapters.ray.cluster_state import live_cluster
from aegis_ray.adapters.ray.launch_actor import LaunchActor, launch_actor_options
from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.models.execution import TERMINAL_STATES, ExecutionState
from aegis_ray.core.models.loading import parse_agent
from aegis_ray.core.placement.demand import bundle_of, demand_of
from aegis_ray.core.placement.fit import plan
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

log = logging.getLogger(__name__)

S = ExecutionState
ACTIVE = (S.PENDING, S.SCHEDULED, S.STARTING, S.RUNNING)
RAY_NAMESPACE = "aegis"
POLL_INTERVAL_S = 0.2
POLL_TIMEOUT_S = 10.0
# While waiting for capacity, refresh the "why is it pending" text this often.
REASON_REFRESH_S = 2.0
# A bundle that no live node could ever hold fails after this long (nodes may be joining).
NEVER_FITS_GRACE_S = 30.0
STOP_GRACE_S = 3.0


def actor_name(execution_id: str, attempt: int) -> str:
    return f"aegis-launch-{execution_id}-a{attempt}"


def container_spec(
    manifest: AgentManifest, execution_id: str, attempt: int, timeout_s: float
) -> ContainerSpec:
    """The container an attempt runs: the manifest's image and limits plus the task as env."""
    spec = manifest.spec
    env = dict(spec.env)
    env.update(
        AEGIS_AGENT_NAME=manifest.metadata.name,
        AEGIS_TASK_INSTRUCTION=spec.task.instruction,
        AEGIS_TASK_INPUT=json.dumps(spec.task.input),
    )
    network = "bridge" if spec.security.network.mode == "allow" else "none"
    return ContainerSpec(
        execution_id=execution_id,
        attempt=attempt,
        image=spec.runtime.image,
        command=tuple(spec.runtime.command) if spec.runtime.command else None,
        env=env,
        cpu_millis=spec.security.resources.cpu,
        memory_bytes=spec.security.resources.memory,
        network_mode=network,
        pull_policy=spec.runtime.image_pull_policy,
        labels={"ai.100monkeys.aegis/agent": manifest.metadata.name},
        # Backstop on the node itself should the orchestrator vanish mid-run.
        hard_deadline_s=timeout_s + 60,
    )


class ExecutionActivities:
    def __init__(self, store: ExecutionStore, nodes: NodeStore) -> None:
        self.store = store
        self.nodes = nodes

    async def _load(self, execution_id: str) -> tuple[Any, AgentManifest]:
        rec = await self.store.get(execution_id, tenant_id=None)
        if rec is None:
            raise ApplicationError(f"execution {execution_id} not found", non_retryable=True)
        return rec, parse_agent(rec.manifest, source=f"execution {execution_id}")

    @activity.defn(name="prepare")
    async def prepare(self, execution_id: str) -> AttemptPlan:
        rec, _ = await self._load(execution_id)
        return AttemptPlan(
            execution_id=execution_id,
            attempt=rec.attempt,
            max_retries=rec.max_retries,
            timeout_s=rec.timeout_s,
            terminal=rec.state in TERMINAL_STATES,
        )

    @activity.defn(name="place")
    async def place(self, ref: AttemptRef) -> Placement:
        """Create the attempt's placement group and wait for it, explaining any wait."""
        rec, manifest = await self._load(ref.execution_id)
        if rec.state in TERMINAL_STATES or rec.attempt != ref.attempt:
            return Placement(ref.execution_id, ref.attempt, False, reason="superseded")
        demand = demand_of(manifest)
        view = await live_cluster(self.nodes)
        bundle = view.bundle_for(bundle_of(demand))
        base = pg_name(ref.execution_id, ref.attempt)
        # Only ready nodes that could hold it, never a drained, down or unfit one; when that set
        # changes while we wait (a node drained, lost or joined), the group is made anew.
        eligible = _eligible(demand, view)
        generation = 0
        pg = await asyncio.to_thread(_get_or_create_pg, base, bundle, view, eligible)
        ready = _ready_future(pg)
        started = time.monotonic()
        never_since: float | None = None
        last_reason = 0.0
        try:
            while not await _wait_ready(ready, 1.0):
                activity.heartbeat()
                waited = time.monotonic() - started
                if time.monotonic() - last_reason < REASON_REFRESH_S:
                    continue
                last_reason = time.monotonic()
                view = await live_cluster(self.nodes)
                result = plan(demand, view.nodes)
                await self.store.set_reason(ref.execution_id, result.summary(), attempt=ref.attempt)
                if waited > PLACEMENT_DEADLINE_S:
                    await _remove_quietly(pg)
                    why = f"no capacity within {PLACEMENT_DEADLINE_S:.0f}s: {result.summary()}"
                    return Placement(ref.execution_id, ref.attempt, False, reason=why)
                now_eligible = _eligible(demand, view)
                if now_eligible != eligible and not view.implicit_head:
                    await _remove_quietly(pg)
                    eligible, generation = now_eligible, generation + 1
                    name = f"{base}.{generation}"
                    pg = await asyncio.to_thread(_get_or_create_pg, name, bundle, view, eligible)
                    ready = _ready_future(pg)
                if result.feasible:
                    never_since = None
                    continue
                never_since = never_since or time.monotonic()
                if time.monotonic() - never_since > NEVER_FITS_GRACE_S:
                    await _remove_quietly(pg)
                    return Placement(ref.execution_id, ref.attempt, False, reason=result.summary())
        except asyncio.CancelledError:
            await _remove_quietly(pg)
            raise
        assert pg is not None
        name = base if generation == 0 else f"{base}.{generation}"
        ray_node_id = await asyncio.to_thread(_bundle_node, pg)
        node_id = _aegis_node_id(view.nodes, ray_node_id)
        moved = await self.store.transition(
            ref.execution_id,
            to=S.SCHEDULED,
            expected=[S.PENDING],
            attempt=ref.attempt,
            node_id=node_id,
            message=f"placed on node {node_id}",
        )
        if moved is None:
            rec = await self.store.get(ref.execution_id, tenant_id=None)
            if rec is None or rec.state != S.SCHEDULED or rec.attempt != ref.attempt:
                # Cancelled or finished meanwhile: give the capacity back.
                await _remove_quietly(pg)
                return Placement(ref.execution_id, ref.attempt, False, reason="superseded")
        await self.store.start_attempt(
            ref.execution_id,
            ref.attempt,
            node_id=node_id,
            ray_node_id=ray_node_id,
            placement_group=name,
        )
        return Placement(
            ref.execution_id,
            ref.attempt,
            True,
            placement_group=name,
            ray_node_id=ray_node_id,
            node_id=node_id,
            bundle=bundle,
        )

    @activity.defn(name="run_attempt")
    async def run_attempt(self, inp: RunInput) -> Outcome:
        """Start the container through a launch actor in the bundle and follow it to its end."""
        rec, manifest = await self._load(inp.execution_id)
        pg = await asyncio.to_thread(get_placement_group, inp.placement_group)
        actor = await asyncio.to_thread(
            _get_or_create_actor, inp.execution_id, inp.attempt, pg, inp.bundle
        )
        try:
            outcome = await self._start_and_follow(rec, manifest, inp, actor)
        except asyncio.CancelledError:
            await _stop_quietly(actor)
            await self._drain(actor, inp.execution_id, inp.attempt)
            await _cleanup_actor(actor)
            raise
        except RayActorError as err:  # the actor is dead (ActorUnavailableError is retried)
            outcome = Outcome(OUTCOME_LOST, reason=_lost_reason(err, inp.node_id))
        outcome.container_removed = await _cleanup_actor(actor)
        return outcome

    async def _start_and_follow(
        self, rec: Any, manifest: AgentManifest, inp: RunInput, actor: Any
    ) -> Outcome:
        eid, attempt = inp.execution_id, inp.attempt
        started_at = rec.started_at.timestamp() if rec.state == S.RUNNING else None
        if rec.state == S.SCHEDULED:
            await self.store.transition(
                eid,
                to=S.STARTING,
                expected=[S.SCHEDULED],
                attempt=attempt,
                node_id=inp.node_id,
                message="starting container",
            )
        if rec.state in (S.SCHEDULED, S.STARTING):
            spec = container_spec(manifest, eid, attempt, inp.timeout_s)
            try:
                container_id = await _heartbeating(actor.start.remote(spec))
            except LaunchError as err:
                # Ray re-raises the actor's exception wrapped; the original is its cause.
                cause = getattr(err, "cause", None) or err
                code = getattr(cause, "code", "start_failed")
                return Outcome(OUTCOME_FAILED, reason=f"{code}: {getattr(cause, 'message', cause)}")
            moved = await self.store.transition(
                eid,
                to=S.RUNNING,
                expected=[S.STARTING],
                attempt=attempt,
                node_id=inp.node_id,
                message=f"container {container_id[:12]} running",
            )
            if moved is None:
                return Outcome(OUTCOME_FAILED, reason="superseded")
            started_at = time.time()
        deadline = (started_at or time.time()) + inp.timeout_s
        return await self._follow(actor, eid, attempt, deadline, inp.timeout_s)

    async def _follow(
        self, actor: Any, eid: str, attempt: int, deadline: float, timeout_s: float
    ) -> Outcome:
        while True:
            try:
                result: PollResult = await asyncio.wait_for(actor.poll.remote(), POLL_TIMEOUT_S)
            except (ActorUnavailableError, TimeoutError):
                # A transient blip between here and the node: the actor may well be fine.
                activity.heartbeat()
                await asyncio.sleep(POLL_INTERVAL_S)
                continue
            await self._store_lines(eid, attempt, result)
            if not result.running:
                if result.exit_code == 0:
                    return Outcome(OUTCOME_SUCCEEDED, exit_code=0)
                why = result.error or f"exit code {result.exit_code}"
                if result.oom_killed:
                    why += " (killed: out of memory)"
                return Outcome(OUTCOME_FAILED, exit_code=result.exit_code, reason=why)
            if time.time() >= deadline:
                await _stop_quietly(actor)
                final = await self._drain(actor, eid, attempt)
                code = final.exit_code if final else None
                return Outcome(
                    OUTCOME_TIMED_OUT, exit_code=code, reason=f"timed out after {timeout_s:g}s"
                )
            activity.heartbeat()
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _drain(self, actor: Any, eid: str, attempt: int) -> PollResult | None:
        """Collect what the container printed before it stopped."""
        result = None
        for _ in range(20):
            try:
                result = await asyncio.wait_for(actor.poll.remote(), 5)
            except (RayActorError, TimeoutError, GetTimeoutError):
                return result
            await self._store_lines(eid, attempt, result)
            if not result.running:
                return result
            await asyncio.sleep(POLL_INTERVAL_S)
        return result

    async def _store_lines(self, eid: str, attempt: int, result: PollResult) -> None:
        if result.lines:
            await self.store.append_logs(
                eid, attempt, [(ln.ts, ln.stream, ln.text) for ln in result.lines]
            )

    @activity.defn(name="cleanup")
    async def cleanup(self, c: Cleanup) -> None:
        """Remove the placement group and any container the attempt left on its node."""
        pg = await asyncio.to_thread(find_pg, c.placement_group)
        if pg is not None:
            await asyncio.to_thread(remove_placement_group, pg)
        if c.container_removed:
            return
        if c.ray_node_id and await asyncio.to_thread(_node_alive, c.ray_node_id):
            sweep = _sweep_containers.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(c.ray_node_id, soft=False)
            )
            try:
                await asyncio.wait_for(sweep.remote(c.execution_id), 30)
            except Exception as err:  # the node may go away meanwhile: nothing left to sweep
                log.warning("container sweep for %s failed: %s", c.execution_id, err)

    @activity.defn(name="finish")
    async def finish(self, f: Finish) -> None:
        to = S(f.state)
        expected = [s for s in ACTIVE if _allowed(s, to)]
        moved = await self.store.transition(
            f.execution_id,
            to=to,
            expected=expected,
            attempt=None if f.any_attempt else f.attempt,
            exit_code=f.exit_code,
            reason=f.reason or None,
            message=f.reason or to.value.lower(),
        )
        attempt = moved.attempt if moved is not None else f.attempt
        await self.store.end_attempt(f.execution_id, attempt, outcome=to.value, reason=f.reason)

    @activity.defn(name="retry")
    async def retry(self, f: Finish) -> None:
        await self.store.end_attempt(f.execution_id, f.attempt, outcome="LOST", reason=f.reason)
        await self.store.transition(
            f.execution_id,
            to=S.PENDING,
            expected=[S.SCHEDULED, S.STARTING, S.RUNNING],
            attempt=f.attempt,
            new_attempt=True,
            reason=f.reason,
            message=f"attempt {f.attempt} lost ({f.reason}); retrying",
        )

    def all(self) -> list[Any]:
        return [self.prepare, self.place, self.run_attempt, self.cleanup, self.finish, self.retry]


def _allowed(frm: ExecutionState, to: ExecutionState) -> bool:
    from aegis_ray.core.models.execution import can_transition

    return can_transition(frm, to)


def _eligible(demand: Any, view: Any) -> list[str]:
    result = plan(demand, view.nodes)
    return sorted(result.fits_now + result.fits_later)


def _ready_future(pg: Any) -> asyncio.Future[Any] | None:
    return asyncio.ensure_future(pg.ready()) if pg is not None else None


async def _wait_ready(ready: asyncio.Future[Any] | None, timeout: float) -> bool:
    """Wait up to `timeout` for the group to be ready, without holding a thread meanwhile."""
    if ready is None:  # no eligible node yet: nothing to wait on but time
        await asyncio.sleep(timeout)
        return False
    done, _ = await asyncio.wait({ready}, timeout=timeout)
    return bool(done) and ready.exception() is None


async def _remove_quietly(pg: Any) -> None:
    if pg is not None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(remove_placement_group, pg)


def _get_or_create_pg(name: str, bundle: dict[str, float], view: Any, eligible: list[str]) -> Any:
    """The attempt's group, created only when some node is eligible (else None)."""
    existing = find_pg(name)
    if existing is not None:
        return existing
    selector = view.selector_for(eligible)
    if selector is None and not view.implicit_head:
        return None
    # Detached and named: survives a restart of the worker that created it, and can be found.
    return placement_group(
        [bundle],
        strategy="STRICT_PACK",
        name=name,
        lifetime="detached",
        bundle_label_selector=[selector] if selector else None,
    )


def find_pg(name: str) -> Any:
    try:
        return get_placement_group(name)
    except ValueError:
        return None


def _bundle_node(pg: Any) -> str:
    table = placement_group_table(pg)
    return str(table["bundles_to_node_id"][0])


def _aegis_node_id(nodes: list[Any], ray_node_id: str) -> str:
    for n in nodes:
        if n.ray_node_id == ray_node_id:
            return str(n.node_id)
    return ray_node_id


def _node_alive(ray_node_id: str) -> bool:
    return any(n["NodeID"] == ray_node_id and n["Alive"] for n in ray.nodes())


def _get_or_create_actor(eid: str, attempt: int, pg: Any, bundle: dict[str, float]) -> Any:
    name = actor_name(eid, attempt)
    try:
        return ray.get_actor(name, namespace=RAY_NAMESPACE)
    except ValueError:
        opts = launch_actor_options(pg, bundle, name=name)
        return LaunchActor.options(**opts).remote()


async def _heartbeating(ref: Any) -> Any:
    """Await a Ray call that may take long (an image pull) while telling Temporal we are alive."""
    fut = asyncio.ensure_future(ref)
    while True:
        done, _ = await asyncio.wait({fut}, timeout=5)
        if done:
            return fut.result()
        activity.heartbeat()


async def _stop_quietly(actor: Any) -> None:
    with contextlib.suppress(RayActorError, TimeoutError, GetTimeoutError):
        await asyncio.wait_for(actor.stop.remote(STOP_GRACE_S), STOP_GRACE_S + 10)


async def _cleanup_actor(actor: Any) -> bool:
    """Have the actor remove its container, then end the actor; False if that did not happen."""
    removed = False
    # The actor or its node may be gone already: the cleanup activity sweeps the node then.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(actor.cleanup.remote(), 20)
        removed = True
    ray.kill(actor, no_restart=True)
    return removed


def _lost_reason(err: RayActorError, node_id: str) -> str:
    return f"launch actor on node {node_id} died: {str(err).splitlines()[0][:200]}"


@ray.remote(num_cpus=0)
def _sweep_containers(execution_id: str) -> int:
    from aegis_ray.adapters.docker.runtime import DockerRuntime

    return DockerRuntime().remove_for_execution(execution_id)
