"""The node registry's view merged with Ray's live node table (pure).

Ray knows which nodes are alive and what they have free; the registry (PostgreSQL) knows what
operators said about them: draining, and when a node was last seen. The statuses a node can have
are `NodeStatus`'s; a registered node Ray no longer lists is gone after GONE_AFTER_S.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from aegis_ray.core.models.node import NodeStatus, NodeType, role_of
from aegis_ray.core.naming import LABEL_NODE_ID
from aegis_ray.core.placement.dimensions import DIMENSIONS, Resources
from aegis_ray.core.placement.fit import NodeFacts

GONE_AFTER_S = 600.0
_NOT_ALIVE = frozenset({NodeStatus.DOWN, NodeStatus.GONE})


def merge(live: list[NodeFacts], records: list[Any], *, now: datetime) -> list[NodeFacts]:
    """Every node Ray or the registry knows, with the status placement must respect."""
    by_id = {r.id: r for r in records}
    out: list[NodeFacts] = []
    for fact in live:
        record = by_id.get(fact.node_id)
        drained = record is not None and record.status == NodeStatus.DRAINING
        if fact.status != NodeStatus.DOWN and drained:
            fact = replace(fact, status=NodeStatus.DRAINING)
        if fact.status == NodeStatus.DOWN and record is not None:
            # Ray's entry of a dead raylet has no labels and no resources: show the node as
            # it registered, with nothing free.
            fact = replace(
                fact,
                role=role_of(record.type, fact.role),
                tags=frozenset(record.tags or []) or fact.tags,
                total=fact.total if any(fact.total) else registered_resources(record.resources),
                free=Resources(),
            )
        out.append(fact)
    listed = {f.node_id for f in out}
    for record in records:
        if record.id in listed:
            continue
        last = record.last_heartbeat or record.registered_at
        gone = last is not None and now - last > timedelta(seconds=GONE_AFTER_S)
        out.append(
            NodeFacts(
                node_id=record.id,
                role=role_of(record.type, NodeType.EDGE),
                status=NodeStatus.GONE if gone else NodeStatus.DOWN,
                tags=frozenset(record.tags or []),
                total=registered_resources(record.resources),
                free=Resources(),
            )
        )
    return _drop_stale_duplicates(out)


_REGISTERED = "node.resources."  # the NodeConfig section a node registers its resources from


def registered_resources(resources: dict[str, Any] | None) -> Resources:
    """What a node registered (its NodeConfig's `node.resources`, as stored by the registry);
    0 in the dimensions it does not state there (executor slots)."""
    given = resources or {}

    def amount(path: str, unit: int) -> int:
        if not path.startswith(_REGISTERED):
            return 0
        value = given.get(path.removeprefix(_REGISTERED))
        return int(value) * unit if isinstance(value, int | float) else 0

    return Resources._make(amount(d.node_config, d.node_unit) for d in DIMENSIONS)


def _drop_stale_duplicates(facts: list[NodeFacts]) -> list[NodeFacts]:
    """Ray keeps dead raylets in its table; show a node once, preferring its live raylet."""
    best: dict[str, NodeFacts] = {}
    for f in facts:
        current = best.get(f.node_id)
        if current is None or (not _alive(current) and _alive(f)):
            best[f.node_id] = f
    return list(best.values())


def _alive(f: NodeFacts) -> bool:
    return f.status not in _NOT_ALIVE


def eligible_selector(node_ids: list[str]) -> dict[str, str]:
    """Bundle label selector keeping a placement group on these nodes (not drained or down)."""
    return {LABEL_NODE_ID: "in(" + ",".join(sorted(node_ids)) + ")"}


def status_change(before: str | None, after: str) -> str:
    """How the cluster feed words a node's change from status `before` (None: first seen)."""
    if after == NodeStatus.GONE:
        return f"gone: down for more than {GONE_AFTER_S / 60:.0f} minutes"
    if before is None:
        return "joined" if after != NodeStatus.DOWN else "registered, but not up in Ray"
    if after == NodeStatus.DOWN:
        return "lost: Ray has no live node for it"
    if after == NodeStatus.DRAINING:
        return "draining: no new work, running work finishes"
    if before == NodeStatus.DRAINING:
        return "undrained: takes new work again"
    if before in _NOT_ALIVE:
        return "back: alive in Ray again"
    return f"{before} -> {after}"
