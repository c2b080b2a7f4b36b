"""Adapter from Ray's live node table to the pure placement facts.

The one special case lives here: a head started by hand (`ray start --head`, then `aegis up`)
carries none of the aegis resources, because Ray fixes a raylet's resources when it starts.
Such a cluster is treated as one implicit hybrid node: control-plane replicas and execution
bundles ask for a sliver of Ray's own head marker resource instead of the aegis ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from aegis_ray.core import ray_mapping as R
from aegis_ray.core.placement.fit import NodeFacts, facts_from_ray_node

HEAD_MARKER = "node:__internal_head__"
MARKER_AMOUNT = 0.001


@dataclass(frozen=True)
class ClusterView:
    nodes: list[NodeFacts]
    implicit_head: bool  # no node carries aegis resources: the head stands in as a hybrid node

    def bundle_for(self, bundle: dict[str, float]) -> dict[str, float]:
        """Adapt an execution bundle to this cluster (see module docstring)."""
        if not self.implicit_head:
            return bundle
        out = {k: v for k, v in bundle.items() if k not in (R.EXECUTOR, R.DISK)}
        out[HEAD_MARKER] = MARKER_AMOUNT
        return out

    def selector_for(self, node_ids: list[str]) -> dict[str, str] | None:
        """Label selector restricting a bundle to these aegis nodes (none for the implicit head,
        which carries no aegis labels)."""
        if self.implicit_head or not node_ids:
            return None
        from aegis_ray.core.registry import eligible_selector

        return eligible_selector(node_ids)


def is_aegis_node(resources: dict[str, float]) -> bool:
    return R.EXECUTOR in resources or R.ORCHESTRATOR in resources


def control_plane_resources(implicit_head: bool) -> dict[str, float]:
    """What a control-plane replica asks for so it only ever runs on an orchestrator."""
    return {HEAD_MARKER if implicit_head else R.ORCHESTRATOR: MARKER_AMOUNT}


def cluster_view() -> ClusterView:
    """Read the live node table (needs a connected Ray driver or worker)."""
    import ray
    from ray._private import state as ray_state  # private: Ray is pinned in pyproject

    nodes: list[dict[str, Any]] = ray.nodes()
    available = ray_state.available_resources_per_node()
    implicit = not any(is_aegis_node(n.get("Resources", {})) for n in nodes if n.get("Alive"))
    facts = []
    for node in nodes:
        fact = facts_from_ray_node(node, available.get(node["NodeID"]))
        if implicit and HEAD_MARKER in node.get("Resources", {}):
            fact = _as_implicit_hybrid(fact)
        facts.append(fact)
    return ClusterView(nodes=facts, implicit_head=implicit)


def _as_implicit_hybrid(fact: NodeFacts) -> NodeFacts:
    # The hand-started head has no slot or disk resources: give it room for both so that only
    # CPU, memory and GPU (which Ray does know) limit what it takes.
    unlimited_disk = 1 << 60
    total = replace(fact.total, slots=1_000_000, disk_bytes=unlimited_disk)
    free = replace(fact.free, slots=1_000_000, disk_bytes=unlimited_disk)
    return replace(fact, role="hybrid", total=total, free=free)


async def live_cluster(node_store: Any) -> ClusterView:
    """Ray's live nodes merged with the registry: drained nodes show as draining, lost as down."""
    import asyncio
    from datetime import UTC, datetime

    from aegis_ray.core.registry import merge

    view = await asyncio.to_thread(cluster_view)
    records = await node_store.list()
    return replace(view, nodes=merge(view.nodes, records, now=datetime.now(UTC)))
