"""The head and worker start commands of cluster_configs/aws.yaml, run for real on this host the
way Ray's cluster launcher runs them: the orchestrator head, then one edge of each edge type.

What the launcher would do is done with its own functions: `with_head_node_ip` exports
RAY_HEAD_IP (127.0.0.1 here) and `_with_environment_variables` exports the node type's
RAY_OVERRIDE_RESOURCES / RAY_OVERRIDE_LABELS in front of each command. Each node gets a HOME of its
own holding what file_mounts would ship there (links to this checkout, the join secret of a
"laptop" HOME). Setup commands are not run: the package is installed here already. The test's
ports come from AEGIS_* settings and AEGIS_RAY_ARGS; resources are the declared ones, as is (Ray
accepts more CPUs, GPUs and memory than the host has).

Runs before the session's single-node stack (files run in name order), so that only one Ray
cluster of this suite is up at a time on this small machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.command_runner import _with_environment_variables
from ray.autoscaler._private.monitor import BASE_READONLY_CONFIG
from ray.autoscaler._private.util import with_head_node_ip

from aegis_ray import Client
from aegis_ray.adapters.ray import head as ray_head
from aegis_ray.cluster_config.validate import instance_node_id
from aegis_ray.core.models.loading import load_file
from aegis_ray.core.ray_mapping import LABEL_NODE_ID
from aegis_ray.node.stack import EdgeState, UpState
from aegis_ray.settings import Settings
from tests.e2e.conftest import remove_home
from tests.e2e.manifests import agent_yaml
from tests.e2e.test_executions import wait_state

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
AWS = REPO / "cluster_configs" / "aws.yaml"
HEAD_IP = "127.0.0.1"
API_PORT = 31080
HEAD_ENV = {
    "AEGIS_API_HOST": "127.0.0.1",  # the orchestrator NodeConfig binds 0.0.0.0; tests stay local
    "AEGIS_API_PORT": str(API_PORT),
    "AEGIS_GRPC_PORT": "31051",
    "AEGIS_RAY_PORT": "31379",
    "AEGIS_RAY_DASHBOARD_PORT": "31265",
    "AEGIS_POSTGRES_PORT": "31432",
    "AEGIS_TEMPORAL_PORT": "31233",
    "AEGIS_TEMPORAL_UI_PORT": "31234",
    "AEGIS_OPENBAO_PORT": "31200",  # and 31201
    "AEGIS_GCS_REDIS_PORT": "31390",  # the head's Redis (default AEGIS_RAY_PORT + 1 is taken)
    "AUTOSCALER_METRIC_PORT": "31387",  # Ray's head autoscaler (default 44217, another head's)
    "AEGIS_RAY_ARGS": " ".join(
        [
            "--ray-client-server-port=31380",
            "--node-manager-port=31381",
            "--object-manager-port=31382",
            "--dashboard-agent-grpc-port=31383",
            "--dashboard-agent-listen-port=31384",
            "--metrics-export-port=31385",
            "--runtime-env-agent-port=31386",
            "--min-worker-port=31100",
            "--max-worker-port=31149",
        ]
    ),
}


def edge_ray_args(base: int, workers: int) -> str:
    """Ports of one more raylet on this host (Ray's worker range 10002-19999 stays clear)."""
    names = ["node-manager", "object-manager", "dashboard-agent-grpc", "dashboard-agent-listen"]
    names += ["metrics-export", "runtime-env-agent"]
    ports = [f"--{name}-port={base + i}" for i, name in enumerate(names)]
    return " ".join([*ports, f"--min-worker-port={workers}", f"--max-worker-port={workers + 24}"])


EDGES = {"edge-cpu": edge_ray_args(31000, 31150), "edge-gpu": edge_ray_args(31010, 31175)}


@dataclass
class Node:
    """One machine of the cluster: its HOME and the environment the launcher's SSH gives it."""

    node_type: str
    home: Path
    env: dict[str, str]
    launcher_env: dict[str, Any]  # what Ray's updater exports in front of each start command

    def run(self, commands: list[str], *, timeout: float) -> None:
        for command in commands:
            line = _with_environment_variables(command, self.launcher_env)
            done = subprocess.run(
                ["bash", "-c", line],
                env=self.env,
                cwd=self.home,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            assert done.returncode == 0, f"{line}\n-> {done.returncode}\n{done.stdout}{done.stderr}"


@dataclass
class Cluster:
    config: dict[str, Any]
    head: Node
    edges: dict[str, Node]
    node_ids: dict[str, str]  # node type -> aegis node id

    def client(self) -> Client:
        token = (self.head.home / ".aegis" / "admin.token").read_text().strip()
        return Client.rest(f"http://127.0.0.1:{API_PORT}", token)


def _node(node_type: str, config: dict[str, Any], laptop: Path, **env: str) -> Node:
    home = Path(tempfile.mkdtemp(prefix=f"aegis-aws-{node_type}-"))
    # file_mounts: what `ray up` would rsync to this node (links here; nothing writes to them).
    for remote, local in config["file_mounts"].items():
        target = home / remote.removeprefix("~/")
        source = laptop / local[2:] if local.startswith("~/") else REPO / local
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source.resolve())
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AEGIS_", "RAY_"))}
    base |= {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "AEGIS_RAY_ATTACH": "false",
        "COLUMNS": "200",
    }
    spec = config["available_node_types"][node_type]
    launcher_env: dict[str, Any] = {
        "RAY_OVERRIDE_RESOURCES": spec["resources"],
        "RAY_OVERRIDE_LABELS": spec["labels"],
    }
    return Node(node_type, home, base | env, launcher_env)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    config = yaml.safe_load(AWS.read_text())
    laptop = Path(tempfile.mkdtemp(prefix="aegis-aws-laptop-"))
    secret = subprocess.run(
        [sys.executable, "-m", "aegis_ray.cli", "cluster", "secret"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (laptop / ".aegis").mkdir()
    (laptop / ".aegis" / "cluster-join-secret").write_text(secret + "\n")

    head = _node(config["head_node_type"], config, laptop, **HEAD_ENV)
    head.launcher_env["RAY_USAGE_STATS_ENABLED"] = 0
    # `ray up` writes the cluster's config here for the head's autoscaler. There is no cloud to
    # launch into on this host: Ray's own read-only config (that of a hand-started head) stands in.
    (head.home / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(BASE_READONLY_CONFIG))
    edges = {
        t: _node(t, config, laptop, AEGIS_API_PORT=str(API_PORT), AEGIS_RAY_ARGS=args)
        for t, args in EDGES.items()
    }
    host = socket.gethostname()
    node_ids = {
        t: instance_node_id("{id}-{host}", _config_id(f"{t}.yaml"), host) for t in EDGES
    } | {head.node_type: _config_id(f"{head.node_type}.yaml")}
    try:
        head.run(config["head_start_ray_commands"], timeout=600)
        for edge in edges.values():
            spec = config["available_node_types"][edge.node_type]
            edge.run(with_head_node_ip(spec["initialization_commands"], HEAD_IP), timeout=60)
            edge.run(with_head_node_ip(config["worker_start_ray_commands"], HEAD_IP), timeout=300)
        yield Cluster(config, head, edges, node_ids)
    finally:
        stop_edge, stop_head = (
            config["worker_start_ray_commands"][0],
            config["head_start_ray_commands"][0],
        )
        for node, stop in [*((e, stop_edge) for e in edges.values()), (head, stop_head)]:
            subprocess.run(["bash", "-c", stop], env=node.env, cwd=node.home, timeout=300)
        _kill_leftovers(head, edges, node_ids)
        for path in (laptop, head.home, *(e.home for e in edges.values())):
            remove_home(path)


def _config_id(name: str) -> str:
    cfg = load_file(REPO / "cluster_configs" / "nodes" / name)
    return cfg.spec.node.id  # type: ignore[union-attr]


def _kill_leftovers(head: Node, edges: dict[str, Node], node_ids: dict[str, str]) -> None:
    """Should `aegis node stop` have failed: stop exactly the Ray sessions this module started."""
    sessions = []
    state = UpState.load(head.home / ".aegis" / "up.json")
    if state and state.ray_session:
        sessions.append(state.ray_session)
    for t, edge in edges.items():
        edge_state = EdgeState.load(Settings(home=edge.home / ".aegis"), node_ids[t])
        if edge_state:
            sessions.append(edge_state.ray_session)
    for sid in sessions:
        ray_head.stop_session(sid)


def _ray_nodes(c: Cluster) -> list[dict[str, Any]]:
    """Ray's node table, read by a driver of its own (keeps this process out of that cluster)."""
    state = UpState.load(c.head.home / ".aegis" / "up.json")
    assert state is not None and state.ray_token_path
    script = (
        "import json, ray\n"
        f"ray.init(address={state.ray_address!r}, logging_level='ERROR', log_to_driver=False)\n"
        "print('NODES=' + json.dumps([n for n in ray.nodes() if n['Alive']]))\n"
    )
    env = c.head.env | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": state.ray_token_path}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("NODES="))
    nodes: list[dict[str, Any]] = json.loads(line.removeprefix("NODES="))
    return nodes


def _wait_ready(c: Cluster, timeout: float = 90) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        items = {n["node_id"]: n for n in c.client().nodes().to_json()["items"]}
        ready = {i for i, n in items.items() if n["status"] == "ready"}
        if set(c.node_ids.values()) <= ready:
            return items
        assert time.monotonic() < deadline, f"not ready: {set(c.node_ids.values()) - ready}"
        time.sleep(1)


def test_each_node_joins_with_exactly_its_node_types_resources_and_labels(
    cluster: Cluster,
) -> None:
    registry = _wait_ready(cluster)
    assert registry[cluster.node_ids["edge-gpu"]]["role"] == "edge"
    assert registry[cluster.node_ids["orchestrator"]]["role"] == "orchestrator"
    by_id = {n["Labels"].get(LABEL_NODE_ID): n for n in _ray_nodes(cluster)}
    types = cluster.config["available_node_types"]
    for node_type, node_id in cluster.node_ids.items():
        ray_node = by_id[node_id]
        resources = {
            k: v
            for k, v in ray_node["Resources"].items()
            if not k.startswith("node:") and k != "object_store_memory"
        }
        assert resources == {k: float(v) for k, v in types[node_type]["resources"].items()}
        labels = {k: v for k, v in ray_node["Labels"].items() if k.startswith("aegis/")}
        assert labels == types[node_type]["labels"] | {LABEL_NODE_ID: node_id}
    # Two instances of one NodeConfig on one host would differ by host only; here each type's
    # instance is named after its own NodeConfig id plus this host.
    assert len(set(cluster.node_ids.values())) == 3


def test_an_agent_runs_on_the_edge_its_tags_select(cluster: Cluster) -> None:
    c = cluster.client()
    text = agent_yaml("on-cpu-edge", "echo hello from the cpu edge").replace(
        "    timeout: 60s", "    timeout: 60s\n    target_tags: [cpu]"
    )
    rec = wait_state(c, c.submit(text, source="cpu.yaml").id, {"SUCCEEDED", "FAILED"})
    assert rec["state"] == "SUCCEEDED", rec
    assert rec["node_id"] == cluster.node_ids["edge-cpu"]
    lines = [ln["line"] for ln in c.log_page(rec["id"]).to_json()["items"]]
    assert "hello from the cpu edge" in lines
