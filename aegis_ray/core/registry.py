"""The node registry's view merged with Ray's live node table (pure).

Ray knows which nodes are alive and what they have free; the registry (PostgreSQL) knows what
operators said about them: draining, and when a node was last seen. A node is:
- ready     alive in Ray and not drained
- draining  alive in Ray, drained by an operator: keeps its running work, gets nothing new
- down      registered, but Ray has no live node for it (lost, or stopped)
- gone      down for longer than GONE_AFTER_S; kept for history
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from aegis_ray.core.placement.fit import Capacity, NodeFacts
from aegis_ray.core.ray_mapping import LABEL_NODE_ID

GONE_AFTER_S = 600.0
_EMPTY = Capacity(0, 0, 0, 0, 0)


def merge(live: list[NodeFacts], records: list[Any], *, now: datetime) -> list[NodeFacts]:
    """Every node Ray or the registry knows, with the status placement must respect."""
    by_id = {r.id: r for r in records}
    out: list[NodeFacts] = []
    for fact in live:
        record = by_id.get(fact.node_id)
        if fact.status != "down" and record is not None and record.status == "draining":
            fact = replace(fact, status="draining")
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
                role=record.type or "edge",
                status="gone" if gone else "down",
                tags=frozenset(record.tags or []),
                total=_EMPTY,
                free=_EMPTY,
            )
        )
    return _drop_stale_duplicates(out)


def _drop_stale_duplicates(facts: list[NodeFacts]) -> list[NodeFacts]:
    """Ray keeps dead raylets in its table; show a node once, preferring its live raylet."""
    best: dict[str, NodeFacts] = {}
    for f in facts:
        current = best.get(f.node_id)
        if current is None or (not _alive(current) and _alive(f)):
            best[f.node_id] = f
    return list(best.values())


def _alive(f: NodeFacts) -> bool:
    return f.status not in ("down", "gone")


def eligible_selector(node_ids: list[str]) -> dict[str, str]:
    """Bundle label selector keeping a placement group on these nodes (not drained or down)."""
    return {LABEL_NODE_ID: "in(" + ",".join(sorted(node_ids)) + ")"}
