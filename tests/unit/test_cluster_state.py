"""Reading Ray's node table into placement facts (the Ray adapter's pure half)."""

import pytest

from aegis_ray.adapters.ray.cluster_state import ClusterView, facts_from_ray_node
from aegis_ray.core.naming import (
    CPU,
    DISK,
    EXECUTOR,
    GPU,
    LABEL_NODE_ID,
    LABEL_REGION,
    LABEL_ROLE,
    MEMORY,
)
from aegis_ray.core.placement.demand import Demand
from aegis_ray.core.placement.dimensions import Resources
from aegis_ray.core.placement.fit import check_node

GiB = 2**30
ANY_EXECUTION = Demand(Resources(500, GiB, GiB, 0, slots=1))


def test_facts_from_ray_node_read_aegis_resources_and_labels() -> None:
    ray_node = {
        "NodeID": "abc123",
        "Alive": True,
        "Resources": {
            "CPU": 4.0,
            "memory": 8.0 * GiB,
            "GPU": 1.0,
            DISK: 50.0,
            EXECUTOR: 16.0,
            "aegis/tag/gpu": 1.0,
            "node:10.0.0.1": 1.0,
        },
        "Labels": {LABEL_NODE_ID: "edge-7", LABEL_ROLE: "edge", LABEL_REGION: "eu"},
    }
    available = {"CPU": 1.5, "memory": 2.0 * GiB, "GPU": 0.0, DISK: 49.9, EXECUTOR: 15.0}
    facts = facts_from_ray_node(ray_node, available)
    assert (facts.node_id, facts.role, facts.status, facts.tags) == (
        "edge-7",
        "edge",
        "ready",
        frozenset({"gpu"}),
    )
    assert facts.total == Resources(4000, 8 * GiB, 50 * GiB, 1, 16)
    assert facts.free == Resources(1500, 2 * GiB, round(49.9 * GiB), 0, 15)


def test_facts_from_bare_dead_ray_node_use_defaults() -> None:
    facts = facts_from_ray_node({"NodeID": "ff00", "Alive": False, "Resources": {"CPU": 2.0}}, None)
    assert (facts.node_id, facts.role, facts.status) == ("ff00", "hybrid", "down")
    assert facts.free == facts.total and facts.total.slots == 0
    # Down: refused by its status alone, not by the zeros of Ray's dead-node entry.
    assert [r.check for r in check_node(ANY_EXECUTION, facts, against="total")] == ["status"]


def test_ray_fractions_round_to_the_nearest_millicore_but_count_only_whole_gpus_and_slots() -> None:
    node = {"NodeID": "n", "Alive": True, "Resources": {CPU: 0.3, GPU: 2.0, EXECUTOR: 4.0}}
    # Float error (0.29999999999999999 cores) is not 299m; half a GPU taken leaves 1 free.
    facts = facts_from_ray_node(node, {CPU: 0.29999999999999999, GPU: 1.5, EXECUTOR: 0.9999999})
    assert (facts.total.cpu_millis, facts.free.cpu_millis) == (300, 300)
    assert (facts.total.gpu, facts.free.gpu) == (2, 1)
    assert facts.free.slots == 1  # Ray's 4-decimal fixed point, not a fraction taken


def test_implicit_head_bundle_drops_what_a_hand_started_head_cannot_carry() -> None:
    bundle = {CPU: 1.0, MEMORY: float(GiB), GPU: 1.0, DISK: 1.0, EXECUTOR: 1.0}
    out = ClusterView(nodes=[], implicit_head=True).bundle_for(bundle)
    assert out == {CPU: 1.0, MEMORY: float(GiB), GPU: 1.0, "node:__internal_head__": 0.001}
    assert ClusterView(nodes=[], implicit_head=False).bundle_for(bundle) == bundle


def test_a_node_table_ray_does_not_give_falls_back_to_the_last_one_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A GCS restarting: readers get the last view after a short wait, one read runs at a time."""
    import asyncio
    import threading

    from aegis_ray.adapters.ray import cluster_state

    fresh = ClusterView(nodes=[], implicit_head=False)
    stale = ClusterView(nodes=[], implicit_head=True)
    gcs_back = threading.Event()
    reads: list[int] = []

    def read() -> ClusterView:
        reads.append(1)
        assert gcs_back.wait(10)
        return fresh

    monkeypatch.setattr(cluster_state, "cluster_view", read)
    monkeypatch.setattr(cluster_state, "RAY_VIEW_WAIT_S", 0.2)
    monkeypatch.setattr(cluster_state, "_last_ray", stale)
    monkeypatch.setattr(cluster_state, "_reading", None)

    async def two_readers() -> list[ClusterView]:
        return list(await asyncio.gather(cluster_state._ray_view(), cluster_state._ray_view()))

    assert asyncio.run(two_readers()) == [stale, stale]
    assert len(reads) == 1  # the second reader shared the first one's unanswered read
    gcs_back.set()
    assert asyncio.run(cluster_state._ray_view()) is fresh
    assert cluster_state._last_ray is fresh
