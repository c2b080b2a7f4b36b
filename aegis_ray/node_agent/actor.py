"""The node agent as a Ray actor: one per executor node, named after it, restarted by Ray.

`ensure_node_agent` creates it (or finds it): detached, `max_restarts=-1`, no CPU, pinned to its
node by the aegis node-id label (so it comes back on that machine even when the raylet restarts
with a new Ray node id), named `aegis-node-agent:<node-id>` so the dashboard shows it. Every
method is async and returns at once or when there is news: the actor serves all the node's
containers from one process.

Ray's side of supervision lives here too: a container whose placement group was removed (by the
reconciler, an operator, or the workflow) is removed within `SWEEP_EVERY_S`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group_table
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from aegis_ray.adapters import metrics
from aegis_ray.adapters.docker.container import ContainerSpec
from aegis_ray.core.models.node import DEFAULT_DOCKER_NETWORK
from aegis_ray.core.naming import (
    LABEL_DOCKER_NETWORK,
    LABEL_NODE_ID,
    RAY_NAMESPACE,
    node_agent_name,
)
from aegis_ray.node_agent.agent import Batch, ContainerInfo, NodeAgent

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 2.0
# Calls in flight at once: every running container's caller holds one (a long poll).
MAX_CONCURRENCY = 1000


class NodeAgentActor:
    """Ray's face of `NodeAgent` (see agent.py for what each method does)."""

    def __init__(self, node_id: str) -> None:
        logging.basicConfig(level=logging.INFO)
        self.node_id = node_id
        self.agent = NodeAgent(node_name=node_id, allowed_network=_own_docker_network())
        self._ready: asyncio.Task[int] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def _started(self) -> NodeAgent:
        # Async work cannot run in __init__: the first call adopts what the engine has.
        if self._ready is None:
            self._ready = asyncio.ensure_future(self.agent.adopt())
            self._sweeper = asyncio.ensure_future(self._sweep_forever())
        adopted = await asyncio.shield(self._ready)
        if adopted:
            log.info("node agent %s took over %d containers", self.node_id, adopted)
        return self.agent

    async def ping(self) -> dict[str, Any]:
        await self._started()
        return {
            "node_id": self.node_id,
            "pid": os.getpid(),
            "ray_node_id": ray.get_runtime_context().get_node_id(),
            "containers": len(self.agent.list()),
        }

    async def start(self, spec: ContainerSpec) -> str:
        return await (await self._started()).start(spec)

    async def follow(
        self, execution_id: str, attempt: int, after_seq: int, max_lines: int, wait_s: float
    ) -> Batch:
        agent = await self._started()
        batch = await agent.follow(
            execution_id, attempt, after_seq=after_seq, max_lines=max_lines, wait_s=wait_s
        )
        if batch.lines:
            metrics.AGENT_LOG_LINES.inc(len(batch.lines), node=self.node_id)
        return batch

    async def stop(self, execution_id: str, attempt: int, grace_s: float) -> None:
        await (await self._started()).stop(execution_id, attempt, grace_s)

    async def remove(self, execution_id: str, attempt: int) -> bool:
        return await (await self._started()).remove(execution_id, attempt)

    async def list(self) -> list[ContainerInfo]:
        return (await self._started()).list()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                await self._sweep()
            except Exception:  # a bad round must not end the loop; the next one retries
                log.exception("placement-group sweep failed")

    async def _sweep(self) -> None:
        running = self.agent.list()
        metrics.AGENT_CONTAINERS.set(len(running), node=self.node_id)
        for info in running:
            if not info.placement_group_id:
                continue
            state = await asyncio.to_thread(_group_state, info.placement_group_id)
            if state in ("REMOVED", None):
                log.info(
                    "placement group of %s/%d is gone: removing its container",
                    info.execution_id,
                    info.attempt,
                )
                await self.agent.remove(
                    info.execution_id, info.attempt, why="placement group removed"
                )


def _own_docker_network() -> str:
    """The Docker network this node gives agents allowed network (its NodeConfig, as a label)."""
    here = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node["NodeID"] == here:
            return str((node.get("Labels") or {}).get(LABEL_DOCKER_NETWORK, DEFAULT_DOCKER_NETWORK))
    return DEFAULT_DOCKER_NETWORK


def _group_state(group_hex: str) -> str | None:
    pg = PlacementGroup(ray.PlacementGroupID.from_hex(group_hex))
    table = placement_group_table(pg)
    return str(table["state"]) if table else None


def agent_options(node_id: str, *, ray_node_id: str | None = None) -> dict[str, Any]:
    """Ray options of a node's agent: pinned by the node-id label, or to a Ray node id for a
    hand-started head that carries no aegis labels."""
    if ray_node_id is not None:
        placement: dict[str, Any] = {
            "scheduling_strategy": NodeAffinitySchedulingStrategy(ray_node_id, soft=False)
        }
    else:
        placement = {"label_selector": {LABEL_NODE_ID: node_id}}
    return {
        "name": node_agent_name(node_id),
        "namespace": RAY_NAMESPACE,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        "max_concurrency": MAX_CONCURRENCY,
        "num_cpus": 0,
        **placement,
    }


def ensure_node_agent(node_id: str, *, ray_node_id: str | None = None) -> Any:
    """The node's agent actor, created if it does not exist yet (needs a Ray connection)."""
    cls = ray.remote(NodeAgentActor)
    return cls.options(**agent_options(node_id, ray_node_id=ray_node_id)).remote(node_id)
