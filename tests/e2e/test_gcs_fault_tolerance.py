"""A head restart is survivable (issue 14): the GCS keeps Ray's state in Redis, and the supervisor
that `aegis up` starts restarts a GCS (or an embedded Redis) that died.

On the session's hybrid `aegis up` stack: executions of ~20 s are running when the GCS server is
SIGKILLed (by the pid the supervisor records), and later its Redis. Every execution still ends
SUCCEEDED with its one attempt, the containers are never restarted or replaced, the node agent
and the Serve processes are the same processes, and nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil
import pytest

from aegis_ray.adapters.process import read_pid
from aegis_ray.adapters.ray.gcs_supervisor import Record
from aegis_ray.core.naming import node_agent_name, placement_group_name
from tests.e2e.conftest import Stack
from tests.e2e.manifests import agent_yaml
from tests.e2e.test_executions import containers_of, wait_state
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.e2e

IN_FLIGHT = 4
# Runs until the test releases it (a file it creates in the container), at most ~2 minutes:
# the containers are all still there to compare after both kills, whatever those took.
HELD = "for i in $(seq 600); do [ -f /tmp/release ] && break; sleep 0.2; done; echo done"


def _record(stack: Stack) -> Record:
    record = Record.load(stack.home / "gcs-supervisor" / "record.json")
    assert record is not None, "aegis up started no GCS supervisor (its record is missing)"
    return record


def _containers(eids: list[str]) -> dict[str, list[tuple[str, str, int]]]:
    """Each execution's containers: (id, when Docker started it, Docker's restart count)."""
    out = {}
    for eid in eids:
        out[eid] = [
            (c.id, c.attrs["State"]["StartedAt"], c.attrs["RestartCount"])
            for c in containers_of(eid)
        ]
    return out


def _ray_actor_processes() -> dict[int, str]:
    """The control plane's and node agents' Ray worker processes (detached actors)."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        title = " ".join(proc.info["cmdline"] or [])
        if title.startswith("ray::") and ("Serve" in title or "NodeAgent" in title):
            found[proc.pid] = title.split()[0]
    return found


def _kill(pid: int, name: str) -> float:
    assert psutil.Process(pid).name() == name
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def _placed_within(stack: Stack, since: float, what: str) -> float:
    """Submit a short execution and wait until it runs (a new placement group: the GCS must
    answer); seconds from `since`."""
    eid = stack.client().submit(agent_yaml(what, "sleep 1"), source="x.yaml").id
    wait_state(stack.client(), eid, {"RUNNING", "SUCCEEDED"}, timeout=120)
    took = time.monotonic() - since
    assert wait_state(stack.client(), eid, {"SUCCEEDED", "FAILED"}, timeout=60)["state"] == (
        "SUCCEEDED"
    )
    return took


def test_the_gcs_and_its_redis_killed_mid_run_are_restarted_and_every_execution_finishes(
    stack: Stack, ray_driver: None
) -> None:
    import ray

    c = stack.client()
    eids = [
        c.submit(agent_yaml(f"gcs-ft-{i}", HELD, timeout="180s"), source="x.yaml").id
        for i in range(IN_FLIGHT)
    ]
    for eid in eids:
        wait_state(c, eid, {"RUNNING"}, timeout=120)
    containers = _containers(eids)
    assert all(len(v) == 1 for v in containers.values()), containers
    node_id = c.nodes().items[0].node_id
    agent = ray.get_actor(node_agent_name(node_id))
    agent_pid = ray.get(agent.ping.remote(), timeout=60)["pid"]
    actors = _ray_actor_processes()
    assert any("NodeAgent" in t for t in actors.values()), actors
    assert any("ServeController" in t for t in actors.values()), actors

    # The GCS dies: the supervisor starts it again on the same port, from the same record.
    before = _record(stack)
    killed = _kill(before.gcs_pid, "gcs_server")
    wait_until(
        lambda: _record(stack).gcs_pid != before.gcs_pid, 30, "the supervisor restarted the GCS"
    )
    gcs_back = time.monotonic() - killed
    placed = _placed_within(stack, killed, "after-gcs-kill")

    # Its Redis dies: the supervisor restarts it from its append-only file; the GCS, which
    # lost its connection, exits and is restarted too.
    after_gcs = _record(stack)
    redis_pid = read_pid(stack.home / "redis" / "redis.pid")
    assert redis_pid is not None
    redis_killed = _kill(redis_pid, "redis-server")
    wait_until(
        lambda: len(_record(stack).redis_restarts) == len(after_gcs.redis_restarts) + 1,
        30,
        "the supervisor restarted Redis",
    )
    placed_after_redis = _placed_within(stack, redis_killed, "after-redis-kill")

    # Nothing running was touched: the same containers (never restarted), the same node agent
    # and Serve processes.
    assert [c.get(e).state for e in eids] == ["RUNNING"] * IN_FLIGHT
    assert _containers(eids) == containers
    assert ray.get(agent.ping.remote(), timeout=60)["pid"] == agent_pid
    assert _ray_actor_processes() == actors

    for eid in eids:
        (container,) = containers_of(eid)
        assert container.exec_run(["touch", "/tmp/release"]).exit_code == 0
    done: list[dict[str, Any]] = [wait_state(c, e, {"SUCCEEDED", "FAILED"}, 120) for e in eids]
    assert [d["state"] for d in done] == ["SUCCEEDED"] * IN_FLIGHT, done
    assert all(len(d["attempts"]) == 1 for d in done), [d["attempts"] for d in done]
    # No orphans: every container removed, every placement group gone.
    wait_until(lambda: not any(containers_of(e) for e in eids), 60, "the containers are removed")
    names = {placement_group_name(e, 1) for e in eids}
    left = [
        g for g in ray.util.placement_group_table().values()
        if g["name"] in names and g["state"] != "REMOVED"
    ]  # fmt: skip
    assert not left, left
    final = _record(stack)
    status = stack.aegis("status", check=True).stdout
    assert f"restarted {len(final.restarts)} times" in status, status
    print(
        f"\nGCS SIGKILLed with {IN_FLIGHT} executions in flight: GCS back after {gcs_back:.2f}s "
        f"(supervisor: {before.gcs_pid} -> {after_gcs.gcs_pid}), a new execution placed "
        f"{placed:.2f}s after the kill. Redis SIGKILLed: a new execution placed "
        f"{placed_after_redis:.2f}s after the kill; GCS restarts {len(final.restarts)}, "
        f"Redis restarts {len(final.redis_restarts)}; {IN_FLIGHT}/{IN_FLIGHT} SUCCEEDED, "
        "0 retried, 0 containers restarted, 0 orphans"
    )


OUTAGE_S = 15.0


def test_the_control_plane_rides_through_a_gcs_that_stays_down_for_a_while(stack: Stack) -> None:
    """The supervisor paused, the GCS stays down ~15 s: the API still takes submissions (from
    the last node table it read) and answers reads, running executions go on, nothing new is
    placed; once the GCS is back everything finishes."""
    c = stack.client()
    running = [
        c.submit(agent_yaml(f"gcs-out-{i}", HELD, timeout="180s"), source="x.yaml").id
        for i in range(2)
    ]
    for eid in running:
        wait_state(c, eid, {"RUNNING"}, timeout=120)
    containers = _containers(running)
    supervisor = read_pid(stack.home / "gcs-supervisor" / "supervisor.pid")
    assert supervisor is not None
    before = _record(stack)
    os.kill(supervisor, signal.SIGSTOP)
    try:
        killed = _kill(before.gcs_pid, "gcs_server")
        new = c.submit(agent_yaml("during-outage", "echo ok"), source="x.yaml")
        accepted = time.monotonic() - killed
        assert new.state == "PENDING"
        listed = {e.id for e in c.list(limit=100).items}
        assert {*running, new.id} <= listed
        assert c.nodes().items, "no nodes listed while the GCS is down"
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed)))
        assert c.get(new.id).state == "PENDING"  # nothing is placed without a GCS
        assert [c.get(e).state for e in running] == ["RUNNING", "RUNNING"]
        assert _containers(running) == containers
    finally:
        os.kill(supervisor, signal.SIGCONT)
    wait_until(
        lambda: _record(stack).gcs_pid != before.gcs_pid, 30, "the supervisor restarted the GCS"
    )
    back = time.monotonic()
    wait_state(c, new.id, {"RUNNING", "SUCCEEDED"}, timeout=120)
    placed = time.monotonic() - back
    for eid in running:
        (container,) = containers_of(eid)
        assert container.exec_run(["touch", "/tmp/release"]).exit_code == 0
    done = [wait_state(c, e, {"SUCCEEDED", "FAILED"}, 120) for e in [*running, new.id]]
    assert [d["state"] for d in done] == ["SUCCEEDED"] * 3, done
    assert all(len(d["attempts"]) == 1 for d in done), [d["attempts"] for d in done]
    wait_until(
        lambda: not any(containers_of(e) for e in [*running, new.id]), 60, "containers removed"
    )
    print(
        f"\nGCS down {OUTAGE_S:.0f}s (supervisor paused): a submission accepted {accepted:.2f}s "
        f"after the kill, placed {placed:.2f}s after the GCS came back; 3/3 SUCCEEDED, 0 retried"
    )
