"""Executions through the node agent on the real stack: long logs, many agents at once, the
agent SIGKILLed mid-run, and a placement group removed under a running attempt."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import pytest
import ray

from aegis_ray.core.naming import RAY_NAMESPACE, node_agent_name
from aegis_ray.node.stack import UpState
from tests.e2e.conftest import LOG_QUOTA, Stack
from tests.e2e.manifests import agent_yaml
from tests.e2e.test_executions import EXECUTION_LABEL, submit, wait_state
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.e2e


def _containers_of(eid: str) -> list[Any]:
    return docker.from_env().containers.list(
        all=True, filters={"label": f"{EXECUTION_LABEL}={eid}"}
    )


def _all_lines(stack: Stack, eid: str) -> list[dict[str, Any]]:
    return [line.to_json() for line in stack.client().logs(eid)]


def test_a_two_thousand_line_log_arrives_complete_and_in_order(stack: Stack) -> None:
    rec = submit(stack, agent_yaml("two-thousand", "seq 1 2000; echo err >&2; printf last"))
    final = wait_state(stack.client(), rec["id"], {"SUCCEEDED", "FAILED"})
    assert final["state"] == "SUCCEEDED", final
    lines = _all_lines(stack, rec["id"])
    stdout = [ln["line"] for ln in lines if ln["stream"] == "stdout"]
    assert stdout == [str(i) for i in range(1, 2001)] + ["last"]
    assert [ln["line"] for ln in lines if ln["stream"] == "stderr"] == ["err"]


def test_twenty_agents_at_once_on_one_node_all_succeed(stack: Stack) -> None:
    texts = [agent_yaml(f"crowd-{n}", f"echo crowd-{n}; sleep 1") for n in range(20)]
    with ThreadPoolExecutor(20) as pool:
        recs = list(pool.map(lambda t: submit(stack, t), texts))
    c = stack.client()
    finals = [wait_state(c, r["id"], {"SUCCEEDED", "FAILED"}, timeout=300) for r in recs]
    assert [f["state"] for f in finals] == ["SUCCEEDED"] * 20, finals
    for n, r in enumerate(recs):
        assert [ln["line"] for ln in _all_lines(stack, r["id"])] == [f"crowd-{n}"]
        assert _containers_of(r["id"]) == []


def _node_agent(stack: Stack) -> Any:
    state = UpState.load(stack.home / "up.json")
    assert state is not None and state.node_id
    return ray.get_actor(node_agent_name(state.node_id), namespace=RAY_NAMESPACE)


def test_a_sigkilled_node_agent_comes_back_and_the_execution_keeps_every_line_once(
    stack: Stack, ray_driver: None
) -> None:
    script = "for i in $(seq 1 60); do echo tick-$i; sleep 0.1; done"
    rec = submit(stack, agent_yaml("outlives-agent", script, timeout="120s"))
    c = stack.client()
    wait_state(c, rec["id"], {"RUNNING"})
    wait_until(lambda: len(_all_lines(stack, rec["id"])) >= 5, 30, "some lines are stored")
    [container] = _containers_of(rec["id"])
    agent = _node_agent(stack)
    pid = ray.get(agent.ping.remote(), timeout=30)["pid"]
    os.kill(pid, signal.SIGKILL)
    final = wait_state(c, rec["id"], {"SUCCEEDED", "FAILED"}, timeout=180)
    assert final["state"] == "SUCCEEDED" and final["attempt"] == 1, final
    assert [ln["line"] for ln in _all_lines(stack, rec["id"])] == [
        f"tick-{i}" for i in range(1, 61)
    ]
    assert ray.get(agent.ping.remote(), timeout=60)["pid"] != pid  # Ray restarted it
    assert container.id not in [x.id for x in _containers_of(rec["id"])]  # removed at the end


def test_removing_the_placement_group_under_a_running_attempt_removes_its_container(
    stack: Stack, ray_driver: None
) -> None:
    from ray.util.placement_group import get_placement_group, remove_placement_group

    rec = submit(stack, agent_yaml("group-pulled", "echo up; sleep 300", timeout="600s"))
    c = stack.client()
    running = wait_state(c, rec["id"], {"RUNNING"})
    assert len(_containers_of(rec["id"])) == 1
    group = next(a["placement_group"] for a in running["attempts"] if a["attempt"] == 1)
    remove_placement_group(get_placement_group(group))
    wait_until(lambda: _containers_of(rec["id"]) == [], 15, "the container is removed")
    final = wait_state(c, rec["id"], {"SUCCEEDED", "FAILED"}, timeout=120)
    assert final["state"] == "FAILED", final
    assert final["reason"] == "attempt lost: placement group removed (no retries left)"


def test_a_chatty_agent_is_cut_at_the_line_limit_and_the_log_quota_with_the_drops_counted(
    stack: Stack,
) -> None:
    # One 100,000-byte line (cut at 64 KiB), then 1,500 lines of 999 bytes: past the session
    # stack's 1 MiB quota.
    script = (
        'head -c 100000 /dev/zero | tr "\\0" a; echo; i=1;'
        ' while [ $i -le 1500 ]; do printf "%0999d\\n" $i; i=$((i + 1)); done'
    )
    rec = submit(stack, agent_yaml("chatty", script, timeout="120s"))
    c = stack.client()
    final = wait_state(c, rec["id"], {"SUCCEEDED", "FAILED"}, timeout=180)
    assert final["state"] == "SUCCEEDED", final
    lines = [ln["line"] for ln in _all_lines(stack, rec["id"])]
    assert lines[0] == "a" * 65536 + " [aegis: line cut, 34464 more bytes not stored]"
    assert lines[1] == f"{1:0999d}"
    assert lines[-1].startswith(f"[aegis: log quota of {LOG_QUOTA} bytes reached")
    stored = len(lines) - 2  # the numbered lines before the marker
    assert 900 < stored < 1500 and lines[stored] == f"{stored:0999d}"
    messages = [e.message for e in c.events(rec["id"]).items if e.kind == "info"]
    assert any(m.startswith(f"log quota of {LOG_QUOTA} bytes reached") for m in messages)
    [summary] = [m for m in messages if m.startswith("log output not stored")]
    dropped = 1500 - stored  # the marker took the place of the first of them
    assert f"1 lines cut at 65536 bytes, {dropped} lines over the quota" in summary, summary
