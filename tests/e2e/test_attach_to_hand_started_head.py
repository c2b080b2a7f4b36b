"""`ray start --head` by hand, then `aegis up`: aegis attaches to that cluster, treats its head as
a hybrid node, runs an agent on it, and `aegis down` removes only what aegis added.

Runs before the session's main stack (files run in name order), so only one Ray cluster is up
at a time on this small machine.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegis_ray.adapters.ray import head as ray_head
from tests.e2e.conftest import Stack, remove_home

pytestmark = pytest.mark.e2e
PORTS = {
    "AEGIS_API_PORT": "30080",
    "AEGIS_GRPC_PORT": "30051",
    "AEGIS_POSTGRES_PORT": "30432",
    "AEGIS_TEMPORAL_PORT": "30233",
    "AEGIS_TEMPORAL_UI_PORT": "30234",
    "AEGIS_OPENBAO_PORT": "30200",  # and 30201
}


@pytest.fixture(scope="module")
def hand_started() -> Iterator[tuple[Stack, int]]:
    home = Path(tempfile.mkdtemp(prefix="aegis-attach-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env |= PORTS | {"AEGIS_HOME": str(home), "AEGIS_RAY_ATTACH": "true", "COLUMNS": "200"}
    ray = str(Path(sys.executable).parent / "ray")
    # What a user types, plus our own ports and sizes so it stays small on a 2-core machine.
    head = subprocess.Popen(
        [
            ray,
            "start",
            "--head",
            "--port=30379",
            "--dashboard-port=30265",
            "--ray-client-server-port=30001",
            "--num-cpus=2",
            "--memory=4000000000",
            "--object-store-memory=300000000",
            "--disable-usage-stats",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = head.communicate(timeout=120)
    assert head.returncode == 0, out
    stack = Stack(
        home=home, env=env, api_url=f"http://127.0.0.1:{PORTS['AEGIS_API_PORT']}", token=""
    )
    try:
        yield stack, head.pid
    finally:
        stack.aegis("down", timeout=120)
        ray_head.stop_session(head.pid)
        remove_home(home)


def test_aegis_up_attaches_and_runs_an_agent_on_the_hand_started_head(
    hand_started: tuple[Stack, int],
) -> None:
    stack, sid = hand_started
    raylets_before = _raylets(sid)
    up = stack.aegis("up", timeout=400)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "attaching to the running Ray cluster" in up.stdout
    assert _raylets(sid) == raylets_before  # no second head or node was started
    stack.token = (stack.home / "admin.token").read_text().strip()

    nodes = stack.client().nodes().to_json()
    assert nodes["implicit_head"] is True
    assert [n["role"] for n in nodes["items"]] == ["hybrid"]

    done = stack.aegis("submit", "examples/hello-agent.yaml", "--follow")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Say hello to the cluster" in done.stdout

    down = stack.aegis("down")
    assert down.returncode == 0, down.stderr
    assert "serve app" in down.stdout and "ray" not in down.stdout.split("stopped:")[1]
    assert _raylets(sid), "aegis down must leave the hand-started Ray head running"
    assert _node_agents(stack) == [], "aegis down must remove the node agent it deployed"


def _node_agents(stack: Stack) -> list[str]:
    # A separate driver: this test process has no Ray connection of its own to the head.
    home = str(stack.home)
    code = (
        "import ray; from pathlib import Path; from aegis_ray.adapters.ray import head;"
        "auth = head.auth_for_existing_cluster(Path(" + repr(home) + "));"
        "head.connect(head.running_local_cluster(), auth);"
        "print([a['name'] for a in ray.util.list_named_actors(all_namespaces=True)"
        " if a['name'].startswith('aegis-node-agent:')])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=stack.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return list(ast.literal_eval(done.stdout.strip().splitlines()[-1]))


def _raylets(sid: int) -> list[int]:
    import psutil

    return [p for p in ray_head.session_pids(sid) if psutil.Process(p).name() == "raylet"]
