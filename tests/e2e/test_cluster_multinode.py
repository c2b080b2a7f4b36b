"""One orchestrator and two edges, each started with `aegis node start`, as separate raylets on
this host (own ports, own AEGIS_HOME): placement by tags and resources across nodes.

Runs before the session's single-node stack (files run in name order) so that only one Ray
cluster is up at a time on this small machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from aegis_ray import ApiError, Client
from aegis_ray.adapters.docker.container import LABEL_NODE
from aegis_ray.adapters.ray import head as ray_head
from aegis_ray.node.stack import EdgeState, credential_path
from aegis_ray.settings import Settings
from tests.e2e.conftest import Stack, remove_home
from tests.e2e.manifests import agent_yaml
from tests.e2e.test_executions import wait_state

pytestmark = pytest.mark.e2e
API_PORT = 22080
GRPC_PORT = 22051


def node_config(node_id: str, kind: str, tags: list[str], cpu: int, gpu: bool = False) -> str:
    runtime = f"  runtime: {{orchestrator_url: 'http://127.0.0.1:{API_PORT}'}}\n"
    api = f"  api: {{bind: 127.0.0.1, rest_port: {API_PORT}, grpc_port: {GRPC_PORT}}}\n"
    return textwrap.dedent(
        f"""\
        apiVersion: 100monkeys.ai/v1
        kind: NodeConfig
        metadata: {{name: {node_id}}}
        spec:
          node:
            id: {node_id}
            type: {kind}
            tags: {tags}
            resources: {{cpu_cores: {cpu}, memory_gb: 2, disk_gb: 10, gpu: {str(gpu).lower()}}}
        """
    ) + (runtime if kind == "edge" else api)


def edge_ports(base: int) -> list[str]:
    """Ports of an extra raylet on this host, clear of the head's and of each other's."""
    return [
        f"--ray-arg=--node-manager-port={base}",
        f"--ray-arg=--object-manager-port={base + 1}",
        f"--ray-arg=--dashboard-agent-grpc-port={base + 2}",
        f"--ray-arg=--dashboard-agent-listen-port={base + 3}",
        f"--ray-arg=--metrics-export-port={base + 4}",
        f"--ray-arg=--runtime-env-agent-port={base + 5}",
        f"--ray-arg=--min-worker-port={base + 10}",
        f"--ray-arg=--max-worker-port={base + 400}",
    ]


@dataclass
class Cluster:
    orch: Stack
    edges: dict[str, Stack]  # node id -> the edge's own home and env
    configs: dict[str, Path]

    def credential(self, node_id: str) -> str:
        """The node credential the edge got when it joined (kept 0600 in its AEGIS_HOME)."""
        path = credential_path(Settings(home=self.edges[node_id].home), node_id)
        assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)
        return path.read_text().strip()

    def client(self) -> Client:
        return self.orch.client()

    def ray_node_of(self, node_id: str) -> str:
        nodes = {n["node_id"]: n for n in self.client().nodes().to_json()["items"]}
        return nodes[node_id]["ray_node_id"]


def _stack(prefix: str, **env: str) -> Stack:
    home = Path(tempfile.mkdtemp(prefix=prefix))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AEGIS_", "RAY_"))}
    base |= {"AEGIS_HOME": str(home), "AEGIS_RAY_ATTACH": "false", "COLUMNS": "200"} | env
    return Stack(home=home, env=base, api_url=f"http://127.0.0.1:{API_PORT}", token="")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    orch = _stack(
        "aegis-orch-",
        AEGIS_RAY_PORT="22379",
        AEGIS_RAY_DASHBOARD_PORT="22265",
        AEGIS_POSTGRES_PORT="22432",
        AEGIS_TEMPORAL_PORT="22233",
        AEGIS_TEMPORAL_UI_PORT="22234",
        AEGIS_OPENBAO_PORT="22200",  # and 22201
    )
    configs = {}
    for node_id, kind, tags, gpu in (
        ("orch-1", "orchestrator", ["primary"], False),
        ("edge-gpu", "edge", ["gpu"], True),
        ("edge-cpu", "edge", ["cpu"], False),
    ):
        path = orch.home / f"{node_id}.yaml"
        path.write_text(node_config(node_id, kind, tags, cpu=1 if kind == "edge" else 2, gpu=gpu))
        configs[node_id] = path
    edges = {"edge-gpu": _stack("aegis-edge-gpu-"), "edge-cpu": _stack("aegis-edge-cpu-")}
    started: list[tuple[Stack, Path]] = []
    try:
        # Recorded before the check: a half-done start is stopped too (`node stop` stops what
        # its up.json says was started).
        started.append((orch, configs["orch-1"]))
        up = orch.aegis("node", "start", "--config", str(configs["orch-1"]), timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        orch.token = (orch.home / "admin.token").read_text().strip()
        for i, (node_id, edge) in enumerate(edges.items()):
            # One join token per node: for that node id, used once.
            token = orch.aegis(
                "token", "create", "--join", "--node-id", node_id, check=True
            ).stdout.strip()
            done = edge.aegis(
                "node", "start", "--config", str(configs[node_id]),
                *edge_ports(23000 + 1000 * i), timeout=300, env={"AEGIS_JOIN_TOKEN": token},
            )  # fmt: skip
            started.append((edge, configs[node_id]))
            assert done.returncode == 0, done.stdout + done.stderr
            edge.token = orch.token
        c = Cluster(orch, edges, configs)
        _wait_ready(c, {"orch-1", "edge-gpu", "edge-cpu"})
        yield c
    finally:
        for stack, config in reversed(started):
            stack.aegis("node", "stop", "--config", str(config), timeout=300)
        # Containers of an edge whose raylet a node-loss test killed: no node agent was left to
        # remove them.
        engine = docker.from_env()
        for node_id in edges:
            mine = {"label": f"{LABEL_NODE}={node_id}"}
            for container in engine.containers.list(all=True, filters=mine):
                container.remove(force=True)
        for stack in (orch, *edges.values()):
            remove_home(stack.home)


def _wait_ready(c: Cluster, ids: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ready = {n.node_id for n in c.client().nodes().items if n.status == "ready"}
        if ids <= ready:
            return
        assert time.monotonic() < deadline, f"not ready: {ids - ready}"
        time.sleep(1)


def test_gpu_manifest_always_lands_on_the_gpu_edge(cluster: Cluster) -> None:
    c = cluster.client()
    gpu_ray_node = cluster.ray_node_of("edge-gpu")
    text = agent_yaml("wants-gpu", "echo on-gpu").replace(
        "    timeout: 60s", "    timeout: 60s\n    target_tags: [gpu]"
    )
    for _ in range(3):
        rec = wait_state(c, c.submit(text, source="gpu.yaml").id, {"SUCCEEDED", "FAILED"})
        assert rec["state"] == "SUCCEEDED" and rec["node_id"] == "edge-gpu"
        (attempt,) = (
            rec["attempts"] if "attempts" in rec else c.get(rec["id"]).to_json()["attempts"]
        )
        assert attempt["ray_node_id"] == gpu_ray_node  # where the launch actor really ran


def test_orchestrator_never_runs_a_container(cluster: Cluster) -> None:
    c = cluster.client()
    ids = [c.submit(agent_yaml("anywhere", "true"), source="a.yaml").id for _ in range(4)]
    nodes = {wait_state(c, i, {"SUCCEEDED", "FAILED"})["node_id"] for i in ids}
    assert nodes <= {"edge-gpu", "edge-cpu"}
    planned = c.plan(agent_yaml("anywhere", "true"), source="a.yaml").to_json()
    orch = next(n for n in planned["nodes"] if n["node_id"] == "orch-1")
    assert {r["check"] for r in orch["reasons"]} >= {"role"}


def test_manifest_bigger_than_every_edge_is_rejected_with_reasons_per_node(
    cluster: Cluster,
) -> None:
    with pytest.raises(ApiError) as err:
        cluster.client().submit(agent_yaml("huge", "true", memory="8Gi"), source="huge.yaml")
    assert err.value.status == 422
    per_node = {n["node_id"]: n["reasons"] for n in err.value.body["plan"]["nodes"]}
    assert set(per_node) == {"orch-1", "edge-gpu", "edge-cpu"}
    for edge in ("edge-gpu", "edge-cpu"):
        assert any(r["check"] == "memory" for r in per_node[edge]), per_node[edge]


def test_draining_node_gets_nothing_new(cluster: Cluster) -> None:
    c = cluster.client()
    text = agent_yaml("wants-gpu", "true").replace(
        "    timeout: 60s", "    timeout: 60s\n    target_tags: [gpu]"
    )
    assert cluster.orch.aegis("node", "drain", "edge-gpu").returncode == 0
    try:
        assert c.node("edge-gpu").to_json()["status"] == "draining"
        with pytest.raises(ApiError) as err:
            c.submit(text, source="gpu.yaml")
        reasons = {n["node_id"]: n["reasons"] for n in err.value.body["plan"]["nodes"]}
        assert any(r["check"] == "status" for r in reasons["edge-gpu"])
        untagged = wait_state(c, c.submit(agent_yaml("any", "true"), source="a").id, {"SUCCEEDED"})
        assert untagged["node_id"] == "edge-cpu"
    finally:
        cluster.orch.aegis("node", "undrain", "edge-gpu")
    assert c.node("edge-gpu").to_json()["status"] == "ready"


def test_node_without_a_valid_join_token_is_refused(cluster: Cluster) -> None:
    stray = _stack("aegis-stray-")
    config = stray.home / "stray.yaml"
    config.write_text(node_config("edge-stray", "edge", ["x"], cpu=1))
    try:
        for env in (
            {},
            {"AEGIS_JOIN_TOKEN": "aegis_forged"},
            {"AEGIS_JOIN_TOKEN": cluster.orch.token},
        ):
            done = stray.aegis("node", "start", "--config", str(config), timeout=60, env=env)
            assert done.returncode == 5, done.stdout + done.stderr
        assert not EdgeState.path(Settings(home=stray.home), "edge-stray").exists()
        assert "edge-stray" not in {n.node_id for n in cluster.client().nodes().items}
    finally:
        shutil.rmtree(stray.home, ignore_errors=True)


def test_node_service_over_grpc_matches_rest(cluster: Cluster) -> None:
    """RegisterNode / Heartbeat with the node's credential; List/Get/Drain as REST does them."""
    import grpc

    from aegis_ray.rpc import nodes_pb2 as nd
    from aegis_ray.rpc.nodes_pb2_grpc import NodeServiceStub

    address = f"127.0.0.1:{GRPC_PORT}"
    joiner = [("authorization", f"Bearer {cluster.credential('edge-cpu')}")]
    stub = NodeServiceStub(grpc.insecure_channel(address))
    # An edge re-registering (as after a restart) with the identity it started with.
    identity = nd.NodeIdentity(
        node=nd.NodeSection(
            id="edge-cpu", type="worker", region="local", tags=["cpu"],
            resources={"cpu_cores": 1, "memory_gb": 2, "disk_gb": 10, "gpu": 0},
        ),
        address="127.0.0.1",
    )  # fmt: skip
    joined = stub.RegisterNode(nd.RegisterNodeRequest(identity=identity), metadata=joiner)
    assert joined.node.id == "edge-cpu" and joined.node.type == "edge"
    assert joined.ray.auth_mode == "token" and joined.ray.token and joined.ray.address
    assert not joined.HasField("credential")  # it has one: no new one
    beat = stub.Heartbeat(nd.HeartbeatRequest(node_id="edge-cpu"), metadata=joiner)
    assert beat.status == "ready" and beat.last_heartbeat.seconds > 0
    with pytest.raises(grpc.RpcError) as err:  # only for itself
        stub.Heartbeat(nd.HeartbeatRequest(node_id="edge-gpu"), metadata=joiner)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    admin = [("authorization", f"Bearer {cluster.orch.token}")]
    with pytest.raises(grpc.RpcError) as err:
        stub.Heartbeat(nd.HeartbeatRequest(node_id="no-such-node"), metadata=admin)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    bad = nd.NodeIdentity(node=nd.NodeSection(id="Bad Id!", type="edge"))
    with pytest.raises(grpc.RpcError) as err:
        stub.RegisterNode(nd.RegisterNodeRequest(identity=bad), metadata=joiner)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "identity.node.id" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:  # the admin token is not a join token
        stub.RegisterNode(
            nd.RegisterNodeRequest(identity=identity),
            metadata=[("authorization", f"Bearer {cluster.orch.token}")],
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    over_grpc = Client.grpc(address, cluster.orch.token)
    rest = cluster.client()
    assert {n["node_id"] for n in over_grpc.nodes().to_json()["items"]} == {
        n["node_id"] for n in rest.nodes().to_json()["items"]
    }
    assert over_grpc.node("edge-gpu").to_json()["total"] == rest.node("edge-gpu").to_json()["total"]
    try:
        assert over_grpc.drain("edge-gpu").to_json()["status"] == "draining"
        assert rest.node("edge-gpu").to_json()["status"] == "draining"
    finally:
        assert over_grpc.undrain("edge-gpu").to_json()["status"] == "ready"
    assert over_grpc.cluster_status().to_json()["orchestrators"] == 1


def test_aegis_nodes_lists_every_node_with_type_status_and_heartbeat(cluster: Cluster) -> None:
    deadline = time.monotonic() + 30
    while True:
        items = {n["node_id"]: n for n in cluster.client().nodes().to_json()["items"]}
        if all(n.get("last_heartbeat") for n in items.values()):
            break
        assert time.monotonic() < deadline, items
        time.sleep(1)
    assert {k: v["role"] for k, v in items.items()} == {
        "orch-1": "orchestrator", "edge-gpu": "edge", "edge-cpu": "edge",
    }  # fmt: skip
    assert items["edge-gpu"]["total"]["gpu"] == 1 and items["orch-1"]["total"]["slots"] == 0
    table = cluster.orch.aegis("nodes")
    assert table.returncode == 0
    for node_id in items:
        assert node_id in table.stdout


def _kill_edge(cluster: Cluster, node_id: str) -> None:
    state = EdgeState.load(Settings(home=cluster.edges[node_id].home), node_id)
    assert state is not None
    for pid in ray_head.session_pids(state.ray_session):
        os.kill(pid, signal.SIGKILL)


def _restart_edge(cluster: Cluster, node_id: str) -> None:
    again = cluster.edges[node_id].aegis(
        "node", "start", "--config", str(cluster.configs[node_id]),
        # No join token: the edge re-registers with its own credential.
        *edge_ports(23000 if node_id == "edge-gpu" else 24000), timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    _wait_ready(cluster, {node_id})


def test_killed_edge_leads_to_a_retry_on_the_other_edge(cluster: Cluster) -> None:
    c = cluster.client()
    text = agent_yaml("survivor", "echo start; sleep 25; echo finished", timeout="300s")
    text = text.replace("    timeout: 300s", "    timeout: 300s\n    max_retries: 1")
    rec = c.submit(text, source="long.yaml").to_json()
    rec = wait_state(c, rec["id"], {"RUNNING"})
    victim = rec["node_id"]
    other = ({"edge-gpu", "edge-cpu"} - {victim}).pop()
    _kill_edge(cluster, victim)
    final = wait_state(c, rec["id"], {"SUCCEEDED", "FAILED"}, timeout=240)
    attempts = c.get(rec["id"]).to_json()["attempts"]
    assert final["state"] == "SUCCEEDED", final
    assert [a["node_id"] for a in attempts] == [victim, other]
    assert attempts[0]["outcome"] == "LOST" and final["attempt"] == 2
    assert any(n.node_id == victim and n.status == "down" for n in c.nodes().items)
    # The lost node comes back (same NodeConfig, a new raylet): it is ready again.
    _restart_edge(cluster, victim)


def test_node_lost_with_no_retries_left_ends_failed_node_lost(cluster: Cluster) -> None:
    c = cluster.client()
    text = agent_yaml("no-second-chance", "sleep 120", timeout="300s").replace(
        "    timeout: 300s", "    timeout: 300s\n    target_tags: [gpu]\n    max_retries: 0"
    )
    rec = wait_state(c, c.submit(text, source="x.yaml").id, {"RUNNING"})
    assert rec["node_id"] == "edge-gpu"
    _kill_edge(cluster, "edge-gpu")
    final = wait_state(c, rec["id"], {"SUCCEEDED", "FAILED"}, timeout=240)
    assert final["state"] == "FAILED" and final["reason"].startswith("node lost"), final
    _restart_edge(cluster, "edge-gpu")


def test_only_eligible_node_lost_with_a_retry_left_ends_node_lost_and_plan_says_down(
    cluster: Cluster,
) -> None:
    c = cluster.client()
    text = agent_yaml("gpu-only", "sleep 120", timeout="300s").replace(
        "    timeout: 300s", "    timeout: 300s\n    target_tags: [gpu]\n    max_retries: 1"
    )
    rec = wait_state(c, c.submit(text, source="x.yaml").id, {"RUNNING"})
    assert rec["node_id"] == "edge-gpu"
    _kill_edge(cluster, "edge-gpu")
    # The retry finds no node that could ever take it: the loss is the reason, not the plan.
    final = wait_state(c, rec["id"], {"SUCCEEDED", "FAILED"}, timeout=240)
    assert final["state"] == "FAILED", final
    assert final["reason"].startswith("node lost: node edge-gpu lost (attempt 1)"), final
    assert "no node can take it again" in final["reason"], final
    assert [a["outcome"] for a in final["attempts"]][:1] == ["LOST"]
    # The down node is shown as it registered (its tag, its GPU) and refused for being down.
    nodes = {n["node_id"]: n for n in c.nodes().to_json()["items"]}
    gpu = nodes["edge-gpu"]
    assert gpu["status"] == "down" and gpu["tags"] == ["gpu"] and gpu["total"]["gpu"] == 1, gpu
    result = c.plan(text, source="x.yaml").to_json()
    reasons = {n["node_id"]: [r["message"] for r in n["reasons"]] for n in result["nodes"]}
    assert reasons["edge-gpu"] == ["node is down"], result
    _restart_edge(cluster, "edge-gpu")
