"""Keeps the registry and the execution rows honest, on every orchestrator.

- Node heartbeats: every live aegis node in Ray's table refreshes its registry row (and its
  current Ray node id); a node Ray declares dead shows as down, later gone (see registry.py).
- Node agents: every live executor node has its agent actor (created if missing: a node that
  joined, or whose agent Ray could not bring back).
- Node events: a node whose status changed since the last round (joined, lost, back, drained,
  gone) gets one row in the cluster feed, however many orchestrators see it.
- Orphaned executions: a row that is not finished but whose workflow no longer runs (it was
  terminated, or Temporal lost it) is ended FAILED, so that no execution stays RUNNING forever.
  Lost nodes and actors are the workflow's own business: it retries or fails the attempt.

Every orchestrator runs one, but only the holder of the PostgreSQL lease `reconciler` sweeps
(adapters/postgres/leases.py): each round renews the lease (or tries to take it), and the
round's writes go through a `FencedPool`, so a holder that lost the lease writes nothing.
Another orchestrator takes over within the lease's time to live plus one round after the
holder stops renewing (AEGIS_LEASE_TTL_S, default 15 s; rounds every 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from aegis_ray.adapters import metrics
from aegis_ray.adapters.postgres.cluster_events import ClusterEventStore
from aegis_ray.adapters.postgres.executions import ExecutionStore
from aegis_ray.adapters.postgres.leases import FencedOut, FencedPool, Lease, LeaseStore, holder_id
from aegis_ray.adapters.postgres.nodes import NodeStore
from aegis_ray.adapters.ray import placement as groups
from aegis_ray.adapters.ray.cluster_state import live_cluster
from aegis_ray.core.models.execution import ACTIVE_STATES, ExecutionState
from aegis_ray.core.models.node import EXECUTING_ROLES, NodeStatus, NodeType, role_of
from aegis_ray.core.naming import (
    LABEL_NODE_ID,
    LABEL_REGION,
    LABEL_ROLE,
    TAG_PREFIX,
    placement_group_name,
    workflow_id,
)
from aegis_ray.node_agent.actor import ensure_node_agent
from aegis_ray.settings import Settings
from aegis_ray.workflows.activities import count_finished

log = logging.getLogger(__name__)
HEARTBEAT_EVERY_S = 5.0
ORPHAN_CHECK_EVERY = 6  # heartbeat rounds
# How long a row may sit unchanged before its workflow is checked (tests shorten it).
ORPHAN_GRACE = timedelta(seconds=Settings().orphan_grace_s)
LEASE = "reconciler"


class Reconciler:
    """The sweeps, on stores bound to one pool (a plain pool, or a FencedPool per lease)."""

    def __init__(
        self,
        executions: ExecutionStore,
        nodes: NodeStore,
        temporal: Client,
        events: ClusterEventStore,
    ) -> None:
        self.executions = executions
        self.nodes = nodes
        self.temporal = temporal
        self.events = events

    @classmethod
    def on(cls, pool: Any, temporal: Client) -> Reconciler:
        return cls(ExecutionStore(pool), NodeStore(pool), temporal, ClusterEventStore(pool))

    async def sweep(self, *, orphans: bool) -> None:
        await self.heartbeats()
        await self.observe_nodes()
        await self.measure()
        if orphans:
            await self.orphans()

    async def heartbeats(self) -> int:
        import ray

        beats = 0
        for node in await asyncio.to_thread(ray.nodes):
            labels = node.get("Labels") or {}
            if not node.get("Alive") or LABEL_NODE_ID not in labels:
                continue
            tags = sorted(
                k[len(TAG_PREFIX) :] for k in node["Resources"] if k.startswith(TAG_PREFIX)
            )
            role = role_of(labels.get(LABEL_ROLE), NodeType.HYBRID)
            if role in EXECUTING_ROLES:
                await asyncio.to_thread(ensure_node_agent, labels[LABEL_NODE_ID])
            await self.nodes.upsert(
                {
                    "id": labels[LABEL_NODE_ID],
                    "type": role.value,
                    "region": labels.get(LABEL_REGION, "local"),
                    "tags": tags,
                    "ray_node_id": node["NodeID"],
                    "address": node.get("NodeManagerAddress"),
                }
            )
            beats += 1
        return beats

    async def observe_nodes(self) -> int:
        """Record each registered node's status change in the cluster feed; how many changed."""
        view = await live_cluster(self.nodes)
        statuses = [n.status.value for n in view.nodes]
        metrics.set_all(metrics.NODES, Counter(statuses), [s.value for s in NodeStatus], "status")
        registered = {r.id for r in await self.nodes.list()}
        changed = 0
        for node in view.nodes:
            if node.node_id in registered:
                changed += await self.events.node_observed(node.node_id, node.status.value)
        return changed

    async def measure(self) -> None:
        """The gauges of executions by state and of pending ones by why they wait."""
        by_state, pending = await self.executions.gauge_counts()
        metrics.set_all(metrics.EXECUTIONS, by_state, [s.value for s in ExecutionState], "state")
        reasons = Counter(metrics.pending_reason(r) for r in pending)
        known = ["placing", "capacity", "no_fit", "retrying", "other"]
        metrics.set_all(metrics.PENDING, reasons, known, "reason")

    async def orphans(self) -> int:
        repaired = 0
        cutoff = datetime.now(UTC) - ORPHAN_GRACE
        for rec in await self.executions.non_terminal():
            if rec.updated_at > cutoff:
                continue
            # Workflows are named after their execution; rows written before the id was stored
            # with the row lack it.
            status = await self._workflow_status(rec.workflow_id or workflow_id(rec.id))
            if status == WorkflowExecutionStatus.RUNNING:
                continue
            why = f"workflow {status.name.lower() if status else 'not found'}; ended by reconciler"
            moved = await self.executions.transition(
                rec.id, to=ExecutionState.FAILED, expected=ACTIVE_STATES, reason=why, message=why
            )
            if moved is not None:
                repaired += 1
                count_finished(moved)
                # Removing the attempt's placement group makes the node agent remove the
                # container.
                name = placement_group_name(str(rec.id), rec.attempt)
                await asyncio.to_thread(groups.remove_named, name)
        return repaired

    async def _workflow_status(self, workflow_id: str) -> Any:
        try:
            return (await self.temporal.get_workflow_handle(workflow_id).describe()).status
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise


class LeasedReconciler:
    """Runs the reconciler's sweeps on this orchestrator while it holds the lease."""

    def __init__(self, pool: Any, temporal: Client, *, node_id: str, ttl_s: float) -> None:
        self.pool = pool
        self.temporal = temporal
        self.leases = LeaseStore(pool)
        self.node_id = node_id
        self.holder = holder_id(node_id)
        self.ttl_s = ttl_s
        self.lease: Lease | None = None
        self.orphan_every = ORPHAN_CHECK_EVERY if ORPHAN_GRACE.total_seconds() >= 30 else 1

    async def round(self, number: int) -> bool:
        """One round: renew or take the lease, sweep if held; whether this process swept."""
        lease = await self.leases.acquire(LEASE, self.holder, self.node_id, self.ttl_s)
        if lease is None:
            if self.lease is not None:
                log.warning("reconciler lease lost to another orchestrator")
            self.lease = None
            return False
        if self.lease is None or self.lease.fencing != lease.fencing:
            log.info("reconciler lease taken (fencing %d)", lease.fencing)
        self.lease = lease
        sweeps = Reconciler.on(FencedPool(self.pool, lease), self.temporal)
        try:
            await sweeps.sweep(orphans=number % self.orphan_every == 0)
        except FencedOut:
            log.warning("reconciler lease taken over during a round; its writes were refused")
            self.lease = None
            return False
        return True

    async def run_forever(self) -> None:
        rounds = 0
        try:
            while True:
                try:
                    await self.round(rounds)
                except Exception:  # a bad round must not end the loop; the next one retries
                    log.exception("reconciler round failed")
                rounds += 1
                await asyncio.sleep(HEARTBEAT_EVERY_S)
        finally:
            if self.lease is not None:  # a clean stop hands over at once
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.leases.release(self.lease))
