"""Adapter from Ray's live node table to the pure placement facts.

The one special case lives here: a head started by hand (`ray start --head`, then `aegis up`)
carries none of the aegis resources, because Ray fixes a raylet's resources when it starts.
Such a cluster is treated as one implicit hybrid node: control-plane replicas and execution
bundles ask for a sliver of Ray's own head marker resource instead of the aegis ones.

Ray's node table is read here, not in the pure core: `facts_from_ray_node` turns one entry into
the placement facts, with the units and rounding of the dimension table.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from aegis_ray.core.models.node import NodeStatus, NodeType, role_of
from aegis_ray.core.naming import (
    EXECUTOR,
    LABEL_NODE_ID,
    LABEL_ROLE,
    ORCHESTRATOR,
    RAY_OWN_RESOURCES,
    TAG_PREFIX,
)
from aegis_ray.core.placement.dimensions import DIMENSIONS, Resources
from aegis_ray.core.placement.fit import NodeFacts

HEAD_MARKER = "node:__internal_head__"
MARKER_AMOUNT = 0.001
# The dimensions a hand-started head lacks: all but those Ray counts under its own names.
_AEGIS_ONLY = frozenset(d.ray for d in DIMENSIONS if d.ray not in RAY_OWN_RESOURCES)
_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class ClusterView:
    nodes: list[NodeFacts]
    implicit_head: bool  # no node carries aegis resources: the head stands in as a hybrid node

    def bundle_for(self, bundle: dict[str, float]) -> dict[str, float]:
        """Adapt an execution bundle to this cluster (see module docstring)."""
        if not self.implicit_head:
            return bundle
        out = {k: v for k, v in bundle.items() if k not in _AEGIS_ONLY}
        out[HEAD_MARKER] = MARKER_AMOUNT
        return out

    def selector_for(self, node_ids: list[str]) -> dict[str, str] | None:
        """Label selector restricting a bundle to these aegis nodes (none for the implicit head,
        which carries no aegis labels)."""
        if self.implicit_head or not node_ids:
            return None
        from aegis_ray.core.registry import eligible_selector

        return eligible_selector(node_ids)


def this_node_id() -> str:
    """The aegis node id of the node this process runs on (Ray's node id if it has none)."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == here:
            return str((node.get("Labels") or {}).get(LABEL_NODE_ID) or here[:12])
    return here[:12]


def is_aegis_node(resources: dict[str, float]) -> bool:
    return EXECUTOR in resources or ORCHESTRATOR in resources


def control_plane_resources(implicit_head: bool) -> dict[str, float]:
    """What a control-plane replica asks for so it only ever runs on an orchestrator."""
    return {HEAD_MARKER if implicit_head else ORCHESTRATOR: MARKER_AMOUNT}


def capacity_of(resources: Mapping[str, float]) -> Resources:
    """Every dimension from a Ray resource map (a node's total or available resources)."""
    return Resources._make(d.from_ray(resources.get(d.ray, 0.0)) for d in DIMENSIONS)


def facts_from_ray_node(node: dict[str, Any], available: dict[str, float] | None) -> NodeFacts:
    """NodeFacts from one `ray.nodes()` entry and its available resources (None: all free)."""
    resources: dict[str, float] = node.get("Resources") or {}
    labels: dict[str, str] = node.get("Labels") or {}
    total = capacity_of(resources)
    alive = node.get("Alive", node.get("alive", False))
    return NodeFacts(
        node_id=labels.get(LABEL_NODE_ID) or str(node.get("NodeID", "")),
        # No role label: a head started by hand (`ray start --head`), which runs everything.
        role=role_of(labels.get(LABEL_ROLE), NodeType.HYBRID),
        status=NodeStatus.READY if alive else NodeStatus.DOWN,
        tags=frozenset(k[len(TAG_PREFIX) :] for k in resources if k.startswith(TAG_PREFIX)),
        total=total,
        free=capacity_of(available) if available is not None else total,
        ray_node_id=str(node.get("NodeID", "")),
    )


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
    # Room without limit in the dimensions the head cannot carry, so that only those Ray does
    # know (CPU, memory, GPU) limit what it takes.
    def roomy(have: Resources) -> Resources:
        pairs = zip(DIMENSIONS, have, strict=True)
        return Resources._make(_UNLIMITED if d.ray in _AEGIS_ONLY else n for d, n in pairs)

    return replace(fact, role=NodeType.HYBRID, total=roomy(fact.total), free=roomy(fact.free))


# The last view this process read, and when: a placement right after the submission that planned
# it (the API and the worker share a process) may take that view instead of asking Ray again.
_last: tuple[float, ClusterView] | None = None


async def live_cluster(node_store: Any, *, max_age_s: float = 0.0) -> ClusterView:
    """Ray's live nodes merged with the registry: drained nodes show as draining, lost as down.

    `max_age_s` > 0 accepts a view this process read at most that long ago.
    """
    import time
    from datetime import UTC, datetime

    from aegis_ray.core.registry import merge

    global _last
    if max_age_s > 0 and _last is not None and time.monotonic() - _last[0] <= max_age_s:
        return _last[1]
    view = await _ray_view()
    records = await node_store.list()
    merged = replace(view, nodes=merge(view.nodes, records, now=datetime.now(UTC)))
    _last = (time.monotonic(), merged)
    return merged


# How long a reader waits for Ray's node table before it takes the last one read instead: the GCS
# may be restarting (GCS fault tolerance), and neither a submission's feasibility check nor a
# node listing needs a fresher view than a few seconds' old one.
RAY_VIEW_WAIT_S = 5.0
# One read of Ray's node table at a time, shared by every reader in the process: while the GCS
# does not answer, callers do not pile up blocked threads.
_reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ray-node-table")
_reading: Future[ClusterView] | None = None
_reading_lock = threading.Lock()
_last_ray: ClusterView | None = None


async def _ray_view() -> ClusterView:
    """Ray's node table; the last one read if Ray does not answer within RAY_VIEW_WAIT_S (or
    fails), so that the API and the reconciler ride through a GCS restart. Before any read has
    succeeded there is nothing to fall back on: then this waits for Ray (or raises its error)."""
    import asyncio
    import logging

    global _reading, _last_ray
    with _reading_lock:
        if _reading is None or _reading.done():
            _reading = _reader.submit(cluster_view)
        reading = _reading
    fallback = _last_ray
    try:
        view = await asyncio.wait_for(
            asyncio.shield(asyncio.wrap_future(reading)),
            RAY_VIEW_WAIT_S if fallback is not None else None,
        )
    except Exception as err:  # TimeoutError, or Ray's own error once it gave up
        if fallback is None:
            raise
        logging.getLogger(__name__).warning(
            "Ray's node table unreadable (%r; the GCS may be restarting): using the last one", err
        )
        return fallback
    _last_ray = view
    return view
