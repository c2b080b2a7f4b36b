import random
import time

import pytest

from aegis_ray.core.models.node import NodeStatus, NodeType
from aegis_ray.core.placement.demand import Demand
from aegis_ray.core.placement.dimensions import Resources
from aegis_ray.core.placement.fit import NodeFacts, check_node, plan

GiB = 2**30
BIG = Resources(cpu_millis=8000, memory_bytes=16 * GiB, disk_bytes=100 * GiB, gpu=0, slots=32)


def node(
    node_id: str = "edge-1",
    *,
    role: str = "edge",
    status: str = "ready",
    tags: frozenset[str] = frozenset(),
    total: Resources = BIG,
    free: Resources | None = None,
) -> NodeFacts:
    return NodeFacts(node_id, NodeType(role), NodeStatus(status), tags, total, free or total)


def demand(memory_gib: int = 1, tags: tuple[str, ...] = (), cpu: int = 500, gpu: int = 0) -> Demand:
    return Demand(Resources(cpu, memory_gib * GiB, GiB, gpu, slots=1), tags)


def test_node_with_room_and_tags_fits_now() -> None:
    result = plan(demand(tags=("gpu",)), [node(tags=frozenset({"gpu"}))])
    assert result.fits_now == ["edge-1"] and result.feasible
    assert result.reasons == {}
    assert result.summary() == "fits now on 1 node"


def test_every_failing_dimension_is_reported_not_just_the_first() -> None:
    small = Resources(cpu_millis=1000, memory_bytes=4 * GiB, disk_bytes=0, gpu=0, slots=4)
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
    busy = Resources(cpu_millis=8000, memory_bytes=2 * GiB, disk_bytes=100 * GiB, gpu=0, slots=0)
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
    no_slots = Resources(cpu_millis=8000, memory_bytes=16 * GiB, disk_bytes=0, gpu=0, slots=0)
    result = plan(
        Demand(Resources(500, GiB, 0, 0, slots=1), ()),
        [node("orch", role="orchestrator", total=no_slots)],
    )
    assert result.never == ["orch"]
    checks = [r.check for r in result.reasons["orch"]]
    assert checks == ["role", "slots"]
    assert result.reasons["orch"][0].message == "orchestrator nodes run no agent containers"


def test_role_and_status_reasons_are_listed_with_resource_reasons() -> None:
    result = plan(demand(64), [node(status="draining")])
    assert [r.check for r in result.reasons["edge-1"]] == ["status", "memory"]


def test_mixed_cluster_is_sorted_into_now_later_never() -> None:
    full = Resources(cpu_millis=0, memory_bytes=0, disk_bytes=0, gpu=0, slots=0)
    nodes = [
        node("free"),
        node("busy", free=full),
        node("orch", role="orchestrator"),
        node("tiny", total=Resources(100, GiB, GiB, 0, 1)),
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


def test_plan_over_a_thousand_nodes_takes_milliseconds() -> None:
    nodes = [
        node(
            f"n{i}",
            tags=frozenset({"a", "b"} if i % 2 else {"a"}),
            free=Resources(i * 8, i * 16 * 2**20, i * GiB // 10, 0, i % 33),
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


def test_the_fast_path_agrees_with_check_node_on_random_nodes() -> None:
    rng = random.Random(11)

    def vector() -> Resources:
        return Resources(*(rng.choice([0, 1, 2, 4]) * GiB for _ in Resources._fields))

    nodes = [
        NodeFacts(
            f"n{i}",
            rng.choice(list(NodeType)),
            rng.choice(list(NodeStatus)),
            frozenset(rng.sample(["a", "b", "c"], rng.randint(0, 3))),
            vector(),
            vector(),
        )
        for i in range(500)
    ]
    for _ in range(20):
        want = Demand(vector(), tuple(rng.sample(["a", "b"], rng.randint(0, 2))))
        result = plan(want, nodes)
        for n in nodes:
            free_ok = not check_node(want, n, against="free")
            total_ok = not check_node(want, n, against="total")
            expected = "now" if free_ok else "later" if total_ok else "never"
            got = (
                "now"
                if n.node_id in result.fits_now
                else "later"
                if n.node_id in result.fits_later
                else "never"
            )
            assert got == expected, (want, n)
