"""The Ray launch actor in a placement-group bundle, driving real containers."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import ray
from ray.exceptions import RayActorError
from ray.util.placement_group import placement_group, remove_placement_group

from aegis_ray.adapters.docker.container import (
    LABEL_EXECUTION_ID,
    ContainerSpec,
    LaunchError,
    LogLine,
)
from aegis_ray.adapters.ray.launch_actor import LaunchActor, launch_actor_options
from aegis_ray.node.stack import UpState
from tests.e2e.conftest import Stack
from tests.e2e.runtime_images import busybox_image

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
BUNDLE = {"CPU": 0.25, "memory": 64 * MiB, "aegis/executor": 1}


@pytest.fixture(scope="module")
def ray_cluster(ray_driver: None, stack: Stack) -> str:
    """The session's one Ray cluster (a hybrid node started by `aegis up`); its aegis node id."""
    state = UpState.load(stack.home / "up.json")
    assert state is not None and state.node_id
    return state.node_id


@pytest.fixture(scope="module")
def image() -> str:
    return busybox_image(docker.from_env())


@pytest.fixture
def bundle_pg(ray_cluster: str) -> Iterator[Any]:
    pg = placement_group([BUNDLE], strategy="STRICT_PACK")
    assert pg.wait(timeout_seconds=30), "placement group did not become ready"
    yield pg
    remove_placement_group(pg)


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


def _reaper_pids(eid: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"aegis_ray.adapters.docker.reaper" in cmd and eid.encode() in cmd:
            pids.append(int(proc.name))
    return pids


def _wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting until {what}")


def poll_to_end(actor: Any, timeout: float = 30) -> tuple[list[LogLine], Any]:
    lines: list[LogLine] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = ray.get(actor.poll.remote())
        lines += result.lines
        if not result.running:
            return lines, result
        time.sleep(0.1)
    raise AssertionError(f"container still running after {timeout}s")


def test_actor_in_the_bundle_runs_the_container_and_reports_lines_and_exit_code(
    bundle_pg: Any, image: str, execution_id: str, ray_cluster: str
) -> None:
    actor = LaunchActor.options(**launch_actor_options(bundle_pg, BUNDLE)).remote()
    info = ray.get(actor.node_info.remote())
    assert info["ray_node_id"] == ray.get_runtime_context().get_node_id()
    assert info["aegis_node_id"] == ray_cluster
    assert info["pid"] != os.getpid() and info["hostname"]
    spec = spec_for(execution_id, image, "echo one; echo two >&2; echo three; exit 3")
    cid = ray.get(actor.start.remote(spec))
    assert ray.get(actor.start.remote(spec)) == cid  # a retried start is harmless
    lines, result = poll_to_end(actor)
    assert result.exit_code == 3
    # Per stream in order; across streams Docker's own timestamps decide (microseconds apart).
    assert [ln.text for ln in lines if ln.stream == "stdout"] == ["one", "three"]
    assert [ln.text for ln in lines if ln.stream == "stderr"] == ["two"]
    ray.get(actor.cleanup.remote())
    assert _containers_of(execution_id) == []
    _wait_until(lambda: not _reaper_pids(execution_id), 10, "the released reaper exits")
    ray.kill(actor)


def test_actor_uses_exactly_the_bundle(bundle_pg: Any) -> None:
    opts = launch_actor_options(bundle_pg, BUNDLE, name="aegis-launch-test")
    assert (opts["num_cpus"], opts["num_gpus"], opts["memory"]) == (0.25, 0, 64 * MiB)
    assert opts["resources"] == {"aegis/executor": 1}
    assert opts["namespace"] == "aegis" and opts["max_restarts"] == 0
    actor = LaunchActor.options(**opts).remote()
    ray.get(actor.node_info.remote())
    assert ray.get_actor("aegis-launch-test", namespace="aegis") is not None
    # The bundle is fully taken by the actor: a second one cannot be placed into it.
    second = LaunchActor.options(**launch_actor_options(bundle_pg, BUNDLE)).remote()
    ready, _ = ray.wait([second.node_info.remote()], timeout=2)
    assert ready == []
    ray.kill(second)
    ray.kill(actor)


def test_launch_error_reaches_the_caller_with_its_code(bundle_pg: Any, execution_id: str) -> None:
    actor = LaunchActor.options(**launch_actor_options(bundle_pg, BUNDLE)).remote()
    spec = spec_for(execution_id, "aegis-test/absent:1", "true")
    with pytest.raises(LaunchError) as err:
        ray.get(actor.start.remote(spec))
    assert err.value.code == "image_not_found"
    assert "aegis-test/absent:1" in err.value.message
    ray.get(actor.cleanup.remote())
    ray.kill(actor)


def test_hard_deadline_stops_a_container_nobody_stops(
    bundle_pg: Any, image: str, execution_id: str
) -> None:
    actor = LaunchActor.options(**launch_actor_options(bundle_pg, BUNDLE)).remote()
    ray.get(actor.start.remote(spec_for(execution_id, image, "sleep 300", hard_deadline_s=1.0)))
    started = time.monotonic()
    _, result = poll_to_end(actor, timeout=20)
    assert time.monotonic() - started < 8
    assert result.exit_code != 0
    assert result.error is not None and "hard deadline" in result.error
    ray.get(actor.cleanup.remote())
    ray.kill(actor)


def test_removing_the_placement_group_kills_the_actor_and_its_container(
    ray_cluster: str, image: str, execution_id: str
) -> None:
    pg = placement_group([BUNDLE], strategy="STRICT_PACK")
    assert pg.wait(timeout_seconds=30)
    actor = LaunchActor.options(**launch_actor_options(pg, BUNDLE)).remote()
    ray.get(actor.start.remote(spec_for(execution_id, image, "sleep 300")))
    assert len(_containers_of(execution_id)) == 1
    assert len(_reaper_pids(execution_id)) == 1
    remove_placement_group(pg)

    def actor_dead() -> bool:
        try:
            ray.get(actor.poll.remote(), timeout=5)
            return False
        except RayActorError:
            return True

    _wait_until(actor_dead, 30, "the actor is dead")
    # Ray kills the actor's process without any cleanup; its reaper removes the container.
    _wait_until(lambda: _containers_of(execution_id) == [], 15, "the container is removed")
    _wait_until(lambda: not _reaper_pids(execution_id), 10, "the reaper exits")
