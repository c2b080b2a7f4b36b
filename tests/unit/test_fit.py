import time

import pytest

from aegis_ray.core import ray_mapping as R
from aegis_ray.core.placement.demand import Demand
from aegis_ray.core.placement.fit import Capacity, NodeFacts, check_node, facts_from_ray_node, plan

GiB = 2**30
BIG = Capacity(cpu_millis=8000, memory_bytes=16 * GiB, disk_bytes=100 * GiB, gpu=0, slots=32)


def node(
    node_id: str = "edge-1",
    *,
    role: str = "edge",
    status: str = "ready",
    tags: frozenset[str] = frozenset(),
    total: Capacity = BIG,
    free: Capacity | None = None,
) -> NodeFacts:
    return NodeFacts(node_id, role, status, tags, total, free or total)


def demand(memory_gib: int = 1, tags: tuple[str, ...] = (), cpu: int = 500, gpu: int = 0) -> Demand:
    return Demand(cpu, memory_gib * GiB, GiB, gpu, tags)


def test_node_with_room_and_tags_fits_now() -> None:
    result = plan(demand(tags=("gpu",)), [node(tags=frozenset({"gpu"}))])
    assert result.fits_now == ["edge-1"] and result.feasible
    assert result.reasons == {}
    assert result.summary() == "fits now on 1 node"


def test_every_failing_dimension_is_reported_not_just_the_first() -> None:
    small = Capacity(cpu_millis=1000, memory_bytes=4 * GiB, disk_bytes=0, gpu=0, slots=4)
    reasons = check_node(demand(8, ("gpu",), cpu=2000, gpu=1), node(total=small), against="total")
    assert [r.check for r in reasons] == ["tag", "cpu", "memory", "disk", "gpu"]
    by_check = {r.check: r for r in reasons}
    assert by_check["tag"].message == "missing tag gpu"
    assert by_check["memory"].message == "memory: needs 8Gi, node has 4Gi"
    assert (by_check["memory"].needed, by_check["memory"].available) == (8 * GiB, 4 * GiB)
    assert by_check["cpu"].message == "cpu: needs 2000m, node has 1000m"


def test_node_short_of_memory_and_a_tag_gets_both_reasons_in_the_plan() -> None:
    result = plan(demand(32, ("gpu",)), [node()])
    assert result.never == ["edge-1"] and not result.feasible
    assert {r.check for r in result.reasons["edge-1"]} == {"memory", "tag"}
    assert result.summary() == "no node can ever fit (1 node): missing tag gpu on 1, memory on 1"


def test_busy_node_fits_later_with_free_capacity_reasons() -> None:
    busy = Capacity(cpu_millis=8000, memory_bytes=2 * GiB, disk_bytes=100 * GiB, gpu=0, slots=0)
    nodes = [
        node("a", tags=frozenset({"x"}), free=busy),
        node("b", tags=frozenset({"x"}), free=busy),
    ]
    result = plan(demand(8, ("x",)), nodes)
    assert result.fits_later == ["a", "b"] and result.fits_now == [] and result.feasible
    messages = [r.message for r in result.reasons["a"]]
    assert messages == ["memory: needs 8Gi, 2Gi free of 16Gi", "slots: needs 1, 0 free of 32"]
    assert result.summary() == (
        "waiting for capacity: 2 nodes match tags, all busy (short of memory on 2, slots on 2)"
    )


@pytest.mark.parametrize("status", ["draining", "down"])
def test_draining_and_down_nodes_never_fit(status: str) -> None:
    result = plan(demand(), [node(status=status)])
    assert result.never == ["edge-1"]
    assert [r.message for r in result.reasons["edge-1"]] == [f"node is {status}"]


def test_orchestrators_never_run_containers() -> None:
    no_slots = Capacity(cpu_millis=8000, memory_bytes=16 * GiB, disk_bytes=0, gpu=0, slots=0)
    result = plan(Demand(500, GiB, 0, 0, ()), [node("orch", role="orchestrator", total=no_slots)])
    assert result.never == ["orch"]
    checks = [r.check for r in result.reasons["orch"]]
    assert checks == ["role", "slots"]
    assert result.reasons["orch"][0].message == "orchestrator nodes run no agent containers"


def test_role_and_status_reasons_are_listed_with_resource_reasons() -> None:
    result = plan(demand(64), [node(status="draining")])
    assert [r.check for r in result.reasons["edge-1"]] == ["status", "memory"]


def test_mixed_cluster_is_sorted_into_now_later_never() -> None:
    full = Capacity(cpu_millis=0, memory_bytes=0, disk_bytes=0, gpu=0, slots=0)
    nodes = [
        node("free"),
        node("busy", free=full),
        node("orch", role="orchestrator"),
        node("tiny", total=Capacity(100, GiB, GiB, 0, 1)),
    ]
    result = plan(demand(2), nodes)
    assert (result.fits_now, result.fits_later, result.never) == (
        ["free"],
        ["busy"],
        ["orch", "tiny"],
    )
    assert set(result.reasons) == {"busy", "orch", "tiny"}


def test_empty_cluster_is_explained() -> None:
    assert plan(demand(), []).summary() == "no node can ever fit: the cluster has no nodes"


def test_facts_from_ray_node_read_aegis_resources_and_labels() -> None:
    ray_node = {
        "NodeID": "abc123",
        "Alive": True,
        "Resources": {
            "CPU": 4.0,
            "memory": 8.0 * GiB,
            "GPU": 1.0,
            R.DISK: 50.0,
            R.EXECUTOR: 16.0,
            "aegis/tag/gpu": 1.0,
            "node:10.0.0.1": 1.0,
        },
        "Labels": {R.LABEL_NODE_ID: "edge-7", R.LABEL_ROLE: "edge", R.LABEL_REGION: "eu"},
    }
    available = {"CPU": 1.5, "memory": 2.0 * GiB, "GPU": 0.0, R.DISK: 49.9, R.EXECUTOR: 15.0}
    facts = facts_from_ray_node(ray_node, available)
    assert (facts.node_id, facts.role, facts.status, facts.tags) == (
        "edge-7",
        "edge",
        "ready",
        frozenset({"gpu"}),
    )
    assert facts.total == Capacity(4000, 8 * GiB, 50 * GiB, 1, 16)
    assert facts.free == Capacity(1500, 2 * GiB, round(49.9 * GiB), 0, 15)


def test_facts_from_bare_dead_ray_node_use_defaults() -> None:
    facts = facts_from_ray_node({"NodeID": "ff00", "Alive": False, "Resources": {"CPU": 2.0}}, None)
    assert (facts.node_id, facts.role, facts.status) == ("ff00", "hybrid", "down")
    assert facts.free == facts.total and facts.total.slots == 0
    assert {r.check for r in check_node(demand(), facts, against="total")} >= {"status", "slots"}


def test_plan_over_a_thousand_nodes_takes_milliseconds() -> None:
    nodes = [
        node(
            f"n{i}",
            tags=frozenset({"a", "b"} if i % 2 else {"a"}),
            free=Capacity(i * 8, i * 16 * 2**20, i * GiB // 10, 0, i % 33),
        )
        for i in range(1000)
    ]
    want = demand(8, ("a", "b"), cpu=4000)
    best = min(_timed(lambda: plan(want, nodes)) for _ in range(5))
    result = plan(want, nodes)
    assert len(result.fits_now) + len(result.fits_later) + len(result.never) == 1000
    assert best < 0.010, f"plan over 1,000 nodes took {best * 1000:.1f} ms"


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
