"""The registry's view merged with Ray's live node table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aegis_ray.core.models.node import NodeStatus, NodeType
from aegis_ray.core.placement.demand import Demand
from aegis_ray.core.placement.dimensions import Resources
from aegis_ray.core.placement.fit import NodeFacts, after_loss, plan
from aegis_ray.core.registry import GONE_AFTER_S, eligible_selector, merge

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CAP = Resources(2000, 2**31, 2**33, 0, 8)


@dataclass
class Rec:
    id: str
    status: str | None = None
    type: str | None = "edge"
    tags: list[str] = field(default_factory=list)
    resources: dict[str, int] = field(default_factory=dict)
    registered_at: datetime = NOW - timedelta(hours=1)
    last_heartbeat: datetime | None = None


def fact(node_id: str, status: str = "ready", ray_id: str = "r1") -> NodeFacts:
    return NodeFacts(
        node_id, NodeType.EDGE, NodeStatus(status), frozenset(), CAP, CAP, ray_node_id=ray_id
    )


def by_id(nodes: list[NodeFacts]) -> dict[str, NodeFacts]:
    return {n.node_id: n for n in nodes}


def test_drained_live_node_is_draining() -> None:
    out = by_id(merge([fact("a")], [Rec("a", status="draining")], now=NOW))
    assert out["a"].status == "draining"


def test_registered_node_missing_from_ray_is_down_then_gone() -> None:
    recent = Rec("b", last_heartbeat=NOW - timedelta(seconds=30), tags=["gpu"])
    old = Rec("c", last_heartbeat=NOW - timedelta(seconds=GONE_AFTER_S + 1))
    out = by_id(merge([], [recent, old], now=NOW))
    assert out["b"].status == "down" and out["b"].tags == frozenset({"gpu"})
    assert out["c"].status == "gone"
    assert out["b"].free.slots == 0  # nothing can be placed on it


def test_node_back_under_a_new_ray_id_shows_once_and_ready() -> None:
    live = [fact("a", "down", ray_id="old"), fact("a", "ready", ray_id="new")]
    out = merge(live, [Rec("a", status="ready")], now=NOW)
    assert [(n.node_id, n.status, n.ray_node_id) for n in out] == [("a", "ready", "new")]


def test_dead_raylet_of_a_drained_node_stays_down() -> None:
    out = by_id(merge([fact("a", "down")], [Rec("a", status="draining")], now=NOW))
    assert out["a"].status == "down"


def test_selector_lists_the_eligible_nodes() -> None:
    assert eligible_selector(["b", "a"]) == {"aegis/node-id": "in(a,b)"}


GPU_NODE = {"cpu_cores": 8, "memory_gb": 32, "disk_gb": 100, "gpu": 1}


def test_dead_raylet_shows_the_node_as_registered_and_refused_by_status_only() -> None:
    # Ray's entry of a dead raylet whose labels still name it, with no resources left.
    dead = NodeFacts(
        "gpu-1", NodeType.HYBRID, NodeStatus.DOWN, frozenset(), Resources(), Resources()
    )
    record = Rec("gpu-1", status="ready", tags=["gpu"], resources=GPU_NODE)
    out = by_id(merge([dead, fact("cpu-1")], [record, Rec("cpu-1")], now=NOW))
    down = out["gpu-1"]
    assert down.status == "down" and down.role == "edge" and down.tags == {"gpu"}
    assert (down.total.cpu_millis, down.total.memory_bytes, down.total.gpu) == (8000, 32 << 30, 1)
    assert down.free == Resources()
    result = plan(Demand(Resources(500, 1 << 30, 0, 1, 1), ("gpu",)), list(out.values()))
    assert [r.message for r in result.reasons["gpu-1"]] == ["node is down"]
    assert result.summary() == (
        "no node can ever fit (2 nodes): down on 1, missing tag gpu on 1, gpu on 1"
    )


def test_registered_only_node_has_its_registered_resources() -> None:
    out = by_id(merge([], [Rec("b", tags=["gpu"], resources=GPU_NODE)], now=NOW))
    assert out["b"].total.gpu == 1 and out["b"].total.slots == 0 and out["b"].free == Resources()


def test_a_lost_node_is_the_reason_when_the_retry_cannot_be_placed() -> None:
    why = "no node can ever fit (3 nodes): down on 1, missing tag gpu on 2"
    assert after_loss("node gpu-1 lost", 1, why) == (
        f"node lost: node gpu-1 lost (attempt 1); no node can take it again: {why}"
    )
    assert after_loss("placement group removed", 2, why).startswith(
        "attempt lost: placement group removed (attempt 2); "
    )
