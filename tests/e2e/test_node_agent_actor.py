"""The node agent as the node's Ray actor: named, pinned, restarted by Ray, taking over its
containers after a SIGKILL, and removing a container whose placement group is removed."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.state import get_actor

from aegis_ray.adapters.docker.container import LABEL_EXECUTION_ID, ContainerSpec, LaunchError
from aegis_ray.core.naming import RAY_NAMESPACE, node_agent_name
from aegis_ray.node.stack import UpState
from aegis_ray.node_agent.actor import ensure_node_agent
from aegis_ray.node_agent.agent import Batch
from tests.e2e.conftest import Stack
from tests.e2e.runtime_images import busybox_image
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
BUNDLE = {"CPU": 0.25, "memory": 64 * MiB, "aegis/executor": 1}


@pytest.fixture(scope="module")
def node_id(ray_driver: None, stack: Stack) -> str:
    """The session's hybrid node (started by `aegis up`), whose agent these tests drive."""
    state = UpState.load(stack.home / "up.json")
    assert state is not None and state.node_id
    return state.node_id


@pytest.fixture(scope="module")
def image() -> str:
    return busybox_image(docker.from_env())


@pytest.fixture
def execution_id() -> Iterator[str]:
    eid = str(uuid.uuid4())
    yield eid
    for c in _containers_of(eid):  # never leave a container behind, whatever the test did
        c.remove(force=True)


def spec_for(eid: str, image: str, script: str, **kw: Any) -> ContainerSpec:
    return ContainerSpec(
        execution_id=eid,
        attempt=1,
        image=image,
        command=("sh", "-c", script),
        env={},
        cpu_millis=250,
        memory_bytes=32 * MiB,
        pull_policy="Never",
        **kw,
    )


def _containers_of(eid: str) -> list[Any]:
    return docker.from_env().containers.list(
        all=True, filters={"label": f"{LABEL_EXECUTION_ID}={eid}"}
    )


def _follow(agent: Any, spec: ContainerSpec, cursor: int, wait_s: float = 5.0) -> Batch:
    batch: Batch = ray.get(
        agent.follow.remote(spec.execution_id, spec.attempt, cursor, 1000, wait_s), timeout=60
    )
    return batch


def test_the_node_agent_is_named_after_its_node_pinned_there_and_detached(
    node_id: str, stack: Stack
) -> None:
    agent = ray.get_actor(node_agent_name(node_id), namespace=RAY_NAMESPACE)
    info = ray.get(agent.ping.remote(), timeout=30)
    assert info["node_id"] == node_id
    up = UpState.load(stack.home / "up.json")
    assert up is not None
    # This stack's head by its address: without one, Ray's state API takes the newest head in
    # /tmp/ray/ray_current_cluster, which an earlier module's (stopped) head may have written.
    state = get_actor(agent._actor_id.hex(), address=up.ray_address)
    assert state is not None
    assert state.name == f"aegis-node-agent:{node_id}"
    assert state.ray_namespace == RAY_NAMESPACE
    assert state.is_detached is True
    assert state.node_id == info["ray_node_id"]
    assert "CPU" not in (state.required_resources or {})
    # Asking for it again (the reconciler and every activity do) finds the same actor.
    again = ensure_node_agent(node_id)
    assert ray.get(again.ping.remote(), timeout=30)["pid"] == info["pid"]


def test_a_launch_error_reaches_the_caller_with_its_code(node_id: str, execution_id: str) -> None:
    agent = ensure_node_agent(node_id)
    spec = spec_for(execution_id, "aegis-test/not-here:1", "true")
    with pytest.raises(LaunchError) as err:
        ray.get(agent.start.remote(spec), timeout=60)
    assert err.value.code == "image_not_found"
    assert "aegis-test/not-here:1" in err.value.message


def test_sigkilled_agent_comes_back_and_hands_out_every_line_exactly_once(
    node_id: str, image: str, execution_id: str
) -> None:
    agent = ensure_node_agent(node_id)
    spec = spec_for(execution_id, image, "for i in $(seq 1 40); do echo line-$i; sleep 0.1; done")
    container_id = ray.get(agent.start.remote(spec), timeout=60)
    first = _follow(agent, spec, -1)
    assert first.lines and not first.done
    lines = list(first.lines)
    old_pid = ray.get(agent.ping.remote(), timeout=30)["pid"]
    os.kill(old_pid, signal.SIGKILL)

    def back() -> bool:
        try:
            return bool(ray.get(agent.ping.remote(), timeout=5)["pid"] != old_pid)
        except Exception:  # restarting: calls fail until the new process is up
            return False

    wait_until(back, 60, "Ray restarted the node agent")
    while True:
        batch = _follow(agent, spec, lines[-1].seq)
        lines += batch.lines
        if batch.done:
            break
    assert batch.exit_code == 0
    assert [ln.text for ln in lines] == [f"line-{i}" for i in range(1, 41)]
    # The same container all along: the agent took it over, nobody started it again.
    assert [c.id for c in _containers_of(execution_id)] == [container_id]
    assert ray.get(agent.remove.remote(spec.execution_id, spec.attempt), timeout=60) is True
    assert _containers_of(execution_id) == []


def test_removing_the_placement_group_removes_the_container(
    node_id: str, image: str, execution_id: str
) -> None:
    pg = placement_group([BUNDLE], strategy="STRICT_PACK")
    assert pg.wait(timeout_seconds=30), "placement group did not become ready"
    agent = ensure_node_agent(node_id)
    spec = spec_for(execution_id, image, "sleep 300", placement_group_id=pg.id.hex())
    ray.get(agent.start.remote(spec), timeout=60)
    assert len(_containers_of(execution_id)) == 1
    remove_placement_group(pg)
    wait_until(lambda: _containers_of(execution_id) == [], 15, "the container is removed")
    batch = _follow(agent, spec, -1)
    assert batch.done and batch.gone == "placement group removed"
