"""Two active orchestrators behind HAProxy, one edge, shared PostgreSQL and Temporal: each node
in a network namespace of its own with its own address (tests/e2e/netns.py), started with
`aegis node start` as an operator would.

    svc  10.214.14.5   PostgreSQL, Temporal, OpenBao (embedded servers listening on its address)
    lb   10.214.14.2   HAProxy with cluster_configs/lb/haproxy.cfg (8080 REST, 50051 gRPC)
    o1   10.214.14.11  first orchestrator: Ray head, API replica, Temporal worker
    o2   10.214.14.12  second orchestrator, joined with a join token
    e1   10.214.14.21  edge (registers through the balancer)

2 orchestrators and 1 edge, not 3 + 2: on the 2-core build machine each extra Ray node costs
~15 s of start-up and ~0.3 GiB, and the third orchestrator would show nothing the second does not.
Figures (time to recover, executions in flight, lost, stuck, duplicated, orphaned) are printed
(`pytest -s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from aegis_ray import ApiError, ApiUnreachable, Client
from aegis_ray.adapters.docker.container import LABEL_NODE
from aegis_ray.adapters.openbao.server import EmbeddedOpenBao
from aegis_ray.adapters.postgres.embedded import EmbeddedPostgres
from aegis_ray.adapters.ray import head as ray_head
from aegis_ray.adapters.temporal.dev_server import TemporalDevServer
from aegis_ray.node.stack import EdgeState
from aegis_ray.settings import Settings
from tests.e2e.conftest import AEGIS, REPO
from tests.e2e.manifests import agent_yaml
from tests.e2e.netns import Netns

pytestmark = pytest.mark.e2e
NET = Netns(
    "aeha", "10.214.14", {"svc": 5, "lb": 2, "o1": 11, "o2": 12, "e1": 21}
)  # fmt: skip
LEASE_TTL_S = 6
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}


def _node_yaml(node_id: str, kind: str, body: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: 100monkeys.ai/v1
        kind: NodeConfig
        metadata: {{name: {node_id}}}
        spec:
          node:
            id: {node_id}
            type: {kind}
            resources: {{cpu_cores: {4 if kind == "edge" else 1}, memory_gb: 4, disk_gb: 10}}
        """
    ) + textwrap.indent(textwrap.dedent(body), "  ")


@dataclass
class Ha:
    homes: dict[str, Path]
    env: dict[str, dict[str, str]]
    configs: dict[str, Path]
    token: str = ""
    database_url: str = ""
    pg: EmbeddedPostgres | None = None
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def lb_url(self) -> str:
        return f"http://{NET.address('lb')}:8080"

    def api_url(self, name: str) -> str:
        return f"http://{NET.address(name)}:8080"

    def aegis(
        self, name: str, *args: str, timeout: float = 300, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """The real CLI, run on node `name` (in its namespace, with its AEGIS_HOME)."""
        return subprocess.run(
            NET.command(name, [*AEGIS, *args]), env=self.env[name] | env, cwd=REPO,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def client(self, url: str | None = None) -> Client:
        return Client.rest(url or self.lb_url, self.token, timeout=10)

    def leases(self) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(self.database_url, timeout=5)
            try:
                rows = await conn.fetch(
                    "SELECT name, node_id, fencing, expires_at > now() AS held FROM leases"
                )
                return [dict(r) for r in rows]
            finally:
                await conn.close()

        return asyncio.run(read())

    def reconciler_holder(self) -> tuple[str, int] | None:
        rows = [r for r in self.leases() if r["name"] == "reconciler" and r["held"]]
        return (rows[0]["node_id"], rows[0]["fencing"]) if rows else None


def _in_svc(code: str) -> None:
    """Run Python in the services' namespace (PostgreSQL and Temporal listen there)."""
    done = subprocess.run(
        NET.command("svc", [sys.executable, "-c", code]),
        env=os.environ | {"PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _start_pg(home: Path) -> None:
    _in_svc(
        "from pathlib import Path; from aegis_ray.adapters.postgres.embedded import "
        f"EmbeddedPostgres as P; P(Path({str(home)!r}), port=5432, host={NET.address('svc')!r})"
        ".start()"
    )


def _wait_http(url: str, timeout: float, want: int = 200) -> float:
    """Seconds until `url` answers `want`."""
    t0 = time.monotonic()
    last: Any = None
    while time.monotonic() - t0 < timeout:
        try:
            last = httpx.get(url, timeout=3).status_code
            if last == want:
                return time.monotonic() - t0
        except httpx.HTTPError as err:
            last = err
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer {want} within {timeout}s (last: {last})")


@pytest.fixture(scope="module")
def ha() -> Iterator[Ha]:
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed (scripts/setup.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="aegis-ha-"))
    names = ("o1", "o2", "e1")
    homes = {n: root / n for n in names}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AEGIS_", "RAY_"))}
    base |= {
        "PYTHONPATH": str(REPO), "AEGIS_RAY_ATTACH": "false", "AEGIS_RAY_MONITOR": "false",
        "AEGIS_LEASE_TTL_S": str(LEASE_TTL_S), "AEGIS_ORPHAN_GRACE_S": "10", "COLUMNS": "200",
    }  # fmt: skip
    env = {n: base | {"AEGIS_HOME": str(homes[n])} for n in names}
    svc = NET.address("svc")
    ha = Ha(homes, env, {})
    configs = {
        "o1": _node_yaml("orch-1", "orchestrator", f"""\
            database: {{url: "postgresql://postgres@{svc}:5432/aegis", pool_size: 8}}
            secrets:
              address: "http://{svc}:8200"
              approle: {{role_id: ROLE, secret_id_file: FILE}}
            temporal: {{address: "{svc}:7233"}}
            api: {{bind: 0.0.0.0, rest_port: 8080, grpc_port: 50051, orchestrators: 2}}
            """),
        "o2": _node_yaml("orch-2", "orchestrator", f"""\
            runtime: {{orchestrator_url: "{ha.api_url('o1')}"}}
            """),
        "e1": _node_yaml("edge-1", "edge", f"""\
            runtime: {{orchestrator_url: "{ha.lb_url}"}}
            """),
    }  # fmt: skip
    for n, text in configs.items():
        homes[n].mkdir(parents=True)
        ha.configs[n] = homes[n] / f"{n}.yaml"
        ha.configs[n].write_text(text)
    pg_home, temporal_home = root / "postgres", root / "temporal"
    ha.pg = EmbeddedPostgres(pg_home, port=5432, host=svc)
    # Every interface of its namespace: the dev server's own services dial each other on
    # 127.0.0.1 whatever --ip says.
    temporal = TemporalDevServer(temporal_home, port=7233, ui_port=8233, host="0.0.0.0")
    bao = EmbeddedOpenBao(root / "openbao", port=8200, host=svc)
    started: list[str] = []
    NET.up()
    try:
        _start_pg(pg_home)
        ha.database_url = ha.pg.dsn
        _in_svc(
            "from pathlib import Path; from aegis_ray.adapters.temporal.dev_server import "
            f"TemporalDevServer as T; T(Path({str(temporal_home)!r}), port=7233, ui_port=8233, "
            "host='0.0.0.0').start()"
        )
        _in_svc(
            "from pathlib import Path; from aegis_ray.adapters.openbao.server import "
            f"EmbeddedOpenBao as B; B(Path({str(bao.data_dir)!r}), port=8200, host={svc!r}).start()"
        )
        access = bao.access()
        text = ha.configs["o1"].read_text().replace("ROLE", access.role_id)
        ha.configs["o1"].write_text(text.replace("FILE", str(access.secret_id_file)))
        password = ha.pg.password_path.read_text().strip()
        env["o1"]["AEGIS_DATABASE_PASSWORD"] = password

        t0 = time.monotonic()
        started.append("o1")
        up = ha.aegis("o1", "node", "start", "--config", str(ha.configs["o1"]),
                      f"--ray-arg=--node-ip-address={NET.address('o1')}", timeout=600)  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        ha.token = (homes["o1"] / "admin.token").read_text().strip()
        tokens = {}
        for n, node_id, kind in (("o2", "orch-2", "orchestrator"), ("e1", "edge-1", "edge")):
            made = ha.aegis("o1", "token", "create", "--join", "--node-id", node_id,
                            "--node-type", kind)  # fmt: skip
            assert made.returncode == 0, made.stdout + made.stderr
            tokens[n] = made.stdout.strip()

        lb_env = os.environ | {
            "AEGIS_LB_BIND": NET.address("lb"),
            "AEGIS_ORCHESTRATOR_1": NET.address("o1"),
            "AEGIS_ORCHESTRATOR_2": NET.address("o2"),
            "AEGIS_ORCHESTRATOR_3": NET.address("o2"),  # two orchestrators: a duplicate server
        }
        cfg = str(REPO / "cluster_configs" / "lb" / "haproxy.cfg")
        ha.procs.append(
            subprocess.Popen(
                NET.command("lb", ["haproxy", "-f", cfg, "-db"]), env=lb_env, text=True,
                stdout=subprocess.DEVNULL, stderr=(root / "haproxy.log").open("w"),
                start_new_session=True,
            )  # fmt: skip
        )
        for n in ("o2", "e1"):
            started.append(n)
            done = ha.aegis(n, "node", "start", "--config", str(ha.configs[n]),
                            f"--ray-arg=--node-ip-address={NET.address(n)}",
                            AEGIS_JOIN_TOKEN=tokens[n])  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        _wait_http(ha.api_url("o2") + "/health", 240)
        _wait_http(ha.lb_url + "/health", 60)
        print(f"\n[ha] 2 orchestrators + 1 edge + HAProxy up in {time.monotonic() - t0:.0f}s")
        yield ha
    finally:
        for p in ha.procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        for n in reversed(started):
            ha.aegis(n, "node", "stop", "--config", str(ha.configs[n]), timeout=300)
        temporal.stop()
        bao.stop()
        ha.pg.stop()
        _remove_containers("edge-1")
        NET.down()
        shutil.rmtree(root, ignore_errors=True)


def _containers(node_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL_NODE}={node_id}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return out.stdout.split()


def _remove_containers(node_id: str) -> None:
    ids = _containers(node_id)
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=120)


def _submit(c: Client, n: int, name: str, seconds: int) -> list[str]:
    text = agent_yaml(name, f"echo start; sleep {seconds}; echo done", timeout="300s")
    return [c.submit(text, source=f"{name}.yaml").id for _ in range(n)]


def _wait_all(c: Client, ids: list[str], states: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    recs: dict[str, Any] = {}
    while True:
        for i in ids:
            if recs.get(i, {}).get("state") not in states:
                with contextlib.suppress(ApiError, ApiUnreachable):  # asked again next round
                    recs[i] = c.get(i).to_json()
        if all(recs.get(i, {}).get("state") in states for i in ids):
            return recs
        if time.monotonic() > deadline:
            return recs
        time.sleep(1)


class Poller:
    """A client reading through the balancer every 0.2 s; an error is retried next time."""

    def __init__(self, c: Client, eid: str) -> None:
        self.c, self.eid = c, eid
        self.ok = 0
        self.errors: list[tuple[float, str]] = []
        self.worst_streak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        streak = 0
        while not self._stop.is_set():
            try:
                self.c.get(self.eid)
                self.ok += 1
                streak = 0
            except (ApiError, ApiUnreachable) as err:
                self.errors.append((time.monotonic(), type(err).__name__ + str(err)[:80]))
                streak += 1
                self.worst_streak = max(self.worst_streak, streak)
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _report(what: str, recs: dict[str, Any], ids: list[str], extra: dict[str, Any]) -> None:
    states = [recs.get(i, {}).get("state") for i in ids]
    figures = {
        "in_flight": len(ids),
        "succeeded": states.count("SUCCEEDED"),
        "lost": sum(1 for i in ids if i not in recs),
        "stuck": sum(1 for s in states if s not in TERMINAL),
        "failed": sum(1 for s in states if s in TERMINAL - {"SUCCEEDED"}),
        "duplicated": sum(1 for i in ids if recs.get(i, {}).get("attempt", 1) > 1),
    } | extra
    print(f"\n[ha] {what}: {json.dumps(figures)}")


def test_aegis_nodes_shows_both_orchestrators_and_the_lease_holder(ha: Ha) -> None:
    deadline = time.monotonic() + 60
    while True:
        nodes = {n["node_id"]: n for n in ha.client().nodes().to_json()["items"]}
        holder = ha.reconciler_holder()
        if holder and all(nodes.get(n, {}).get("status") == "ready" for n in ("orch-1", "orch-2")):
            break
        assert time.monotonic() < deadline, (nodes, holder)
        time.sleep(1)
    assert nodes["orch-2"]["role"] == "orchestrator" and nodes["edge-1"]["role"] == "edge"
    assert nodes[holder[0]]["leases"] == ["reconciler"]
    other = ({"orch-1", "orch-2"} - {holder[0]}).pop()
    assert nodes[other]["leases"] == []
    # From any machine, through the balancer (an unreachable URL first: the CLI moves on).
    dead = f"http://{NET.address('e1')}:8080"
    table = ha.aegis("o2", "--api-url", dead, "--api-url", ha.lb_url, "nodes",
                     AEGIS_API_TOKEN=ha.token)  # fmt: skip
    assert table.returncode == 0, table.stderr
    line = next(ln for ln in table.stdout.splitlines() if ln.startswith(holder[0]))
    assert "reconciler" in line, table.stdout
    # Each orchestrator answers alike: the same rows from both, read directly.
    one = {n.node_id for n in ha.client(ha.api_url("o1")).nodes().items}
    two = {n.node_id for n in ha.client(ha.api_url("o2")).nodes().items}
    assert one == two == {"orch-1", "orch-2", "edge-1"}
    # Edges never get an API proxy.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{NET.address('e1')}:8080/health", timeout=3)


def _replica_pid(ha: Ha) -> int:
    """The API replica on orchestrator 1 (its Temporal worker and reconciler run in it)."""
    import psutil

    from aegis_ray.node.stack import UpState

    state = UpState.load(ha.homes["o1"] / "up.json")
    assert state is not None
    for pid in ray_head.session_pids(state.ray_session):
        with contextlib.suppress(psutil.Error):
            if "ServeReplica:aegis:AegisAPI" in " ".join(psutil.Process(pid).cmdline()):
                return pid
    raise AssertionError("no API replica on orchestrator 1")


def _hand_lease_to_orchestrator_2(ha: Ha) -> float:
    """Freeze orchestrator 1's replica (SIGSTOP) until orchestrator 2 takes the reconciler
    lease, then let it go on as a stale holder; seconds the takeover took."""
    before = ha.reconciler_holder()
    assert before is not None
    if before[0] == "orch-2":
        return 0.0
    pid = _replica_pid(ha)
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        while (now := ha.reconciler_holder()) is None or now[0] != "orch-2":
            assert time.monotonic() - t0 < LEASE_TTL_S + 30, f"lease still {now}"
            time.sleep(0.5)
    finally:
        os.kill(pid, signal.SIGCONT)
    took = time.monotonic() - t0
    assert now[1] > before[1]  # a new fencing number: orchestrator 1's writes are refused
    time.sleep(6)  # orchestrator 1 runs a round again: it sees the lease is not its own
    assert ha.reconciler_holder() == now
    return took


def _docker_state(node_id: str) -> dict[str, tuple[str, int]]:
    """The node's containers: id -> (when Docker started it, Docker's restart count)."""
    ids = _containers(node_id)
    if not ids:
        return {}
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{.Id}} {{.State.StartedAt}} {{.RestartCount}}", *ids],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    rows = (ln.split() for ln in out.stdout.splitlines() if ln.strip())
    return {cid[:12]: (started, int(count)) for cid, started, count in rows}


def _raylets(ha: Ha) -> dict[str, int]:
    """Each node's raylet pid (the head's from its `aegis node start` state, the others' from
    theirs): the same pids after a GCS restart means they reconnected, not restarted."""
    import psutil

    from aegis_ray.node.stack import UpState

    head = UpState.load(ha.homes["o1"] / "up.json")
    assert head is not None
    sessions = {"o1": head.ray_session}
    for n, node_id in (("o2", "orch-2"), ("e1", "edge-1")):
        edge = EdgeState.load(Settings(home=ha.homes[n]), node_id)
        assert edge is not None
        sessions[n] = edge.ray_session
    found = {}
    for n, sid in sessions.items():
        for pid in ray_head.session_pids(sid):
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).name() == "raylet":
                    found[n] = pid
    return found


def test_executions_survive_the_head_gcs_killed(ha: Ha) -> None:
    """Scenario (b): the head's GCS is SIGKILLed with executions running through the balancer;
    the GCS supervisor restarts it from Redis. The head really keeps its state in Redis (the
    default store) with the supervisor: its record is there."""
    from aegis_ray.adapters.ray.gcs_supervisor import Record
    from aegis_ray.node.stack import UpState

    head = UpState.load(ha.homes["o1"] / "up.json")
    assert head is not None and head.gcs_store != "memory", head
    record_path = ha.homes["o1"] / "gcs-supervisor" / "record.json"
    before = Record.load(record_path)
    assert before is not None, "the head runs no GCS supervisor"
    c = ha.client()
    ids = _submit(c, 8, "ha-gcs", 20)
    running = _wait_all(c, ids, {"RUNNING"} | TERMINAL, 120)
    assert all(r["state"] == "RUNNING" for r in running.values()), running
    containers = _docker_state("edge-1")
    assert len(containers) == len(ids), containers
    raylets = _raylets(ha)
    assert set(raylets) == {"o1", "o2", "e1"}, raylets
    poller = Poller(ha.client(), ids[0])
    time.sleep(1)
    os.kill(before.gcs_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    while (now := Record.load(record_path)) is None or now.gcs_pid == before.gcs_pid:
        assert time.monotonic() - killed_at < 30, "the supervisor did not restart the GCS"
        time.sleep(0.1)
    gcs_back = time.monotonic() - killed_at
    after = _docker_state("edge-1")  # the executions run ~20 s: all still there
    # A new execution is placed on the edge (a new placement group: the GCS answers and the
    # edge's raylet is back with it).
    new = _submit(c, 1, "ha-gcs-new", 1)
    placed = _wait_all(c, new, {"RUNNING"} | TERMINAL, 120)
    placed_s = time.monotonic() - killed_at
    recs = _wait_all(c, ids + new, TERMINAL, 240)
    poller.stop()
    deadline = time.monotonic() + 60
    while _containers("edge-1") and time.monotonic() < deadline:
        time.sleep(1)
    orphans = len(_containers("edge-1"))
    restarted = sum(1 for cid, (started, count) in after.items()
                    if count or containers.get(cid, ("", 0))[0] != started)  # fmt: skip
    _report("head GCS SIGKILLed", recs, ids, {
        "gcs_back_after_s": round(gcs_back, 2), "new_execution_placed_after_s": round(placed_s, 1),
        "containers_kept": len(set(after) & set(containers)), "containers_restarted": restarted,
        "client_reads_ok": poller.ok, "client_errors_retried": len(poller.errors),
        "worst_error_streak": poller.worst_streak, "orphans": orphans,
    })  # fmt: skip
    assert after.keys() == containers.keys() and restarted == 0, (containers, after)
    assert placed[new[0]]["state"] in {"RUNNING", "SUCCEEDED"}, placed
    assert [recs[i]["state"] for i in ids + new] == ["SUCCEEDED"] * (len(ids) + 1), recs
    assert all(recs[i].get("attempt", 1) == 1 for i in ids), recs
    assert orphans == 0
    assert _raylets(ha) == raylets  # every node's raylet reconnected; none restarted
    assert poller.worst_streak <= 5, poller.errors
    assert [ln.line for ln in c.logs(ids[-1])] == ["start", "done"]


def test_executions_survive_orchestrator_2_killed(ha: Ha) -> None:
    handed_over = _hand_lease_to_orchestrator_2(ha)
    c = ha.client()
    ids = _submit(c, 10, "ha-kill", 20)
    running = _wait_all(c, ids, {"RUNNING"} | TERMINAL, 120)
    assert all(r["state"] == "RUNNING" for r in running.values()), running
    holder = ha.reconciler_holder()
    poller = Poller(ha.client(), ids[0])
    time.sleep(1)
    state = EdgeState.load(Settings(home=ha.homes["o2"]), "orch-2")
    assert state is not None
    killed_at = time.monotonic()
    for pid in ray_head.session_pids(state.ray_session):  # raylet, API replica, worker, proxy
        os.kill(pid, signal.SIGKILL)
    takeover = None
    if holder and holder[0] == "orch-2":
        deadline = time.monotonic() + LEASE_TTL_S + 30
        while (now := ha.reconciler_holder()) is None or now[0] != "orch-1":
            assert time.monotonic() < deadline, f"lease still {now}"
            time.sleep(0.5)
        takeover = time.monotonic() - killed_at
        assert now[1] > holder[1]  # a new fencing number
    recs = _wait_all(c, ids, TERMINAL, 240)
    poller.stop()
    deadline = time.monotonic() + 60
    while _containers("edge-1") and time.monotonic() < deadline:
        time.sleep(1)
    orphans = len(_containers("edge-1"))
    recovered = (poller.errors[-1][0] - killed_at) if poller.errors else 0.0
    _report("orchestrator 2 SIGKILLed", recs, ids, {
        "lease_to_orch_2_after_orch_1_froze_s": round(handed_over, 1),
        "reconciler_lease_before_kill": holder[0] if holder else None,
        "lease_back_to_orch_1_after_kill_s": round(takeover, 1) if takeover else None,
        "client_reads_ok": poller.ok, "client_errors_retried": len(poller.errors),
        "worst_error_streak": poller.worst_streak, "clients_recovered_after_s": round(recovered, 1),
        "orphans": orphans,
    })  # fmt: skip
    assert [recs[i]["state"] for i in ids] == ["SUCCEEDED"] * len(ids), recs
    assert orphans == 0
    assert takeover is not None  # orchestrator 2 held the lease: it moved
    assert poller.worst_streak <= 5, poller.errors  # at most a second of retried errors
    logs = [ln.line for ln in c.logs(ids[-1])]
    assert logs == ["start", "done"], logs  # no line lost or repeated


def test_postgres_restart_gives_503_then_recovers(ha: Ha) -> None:
    assert ha.pg is not None
    c = ha.client(f"{ha.lb_url},{ha.api_url('o1')}")  # several URLs: the SDK's failover
    ids = _submit(c, 4, "ha-pg", 15)
    _wait_all(c, ids, {"RUNNING"} | TERMINAL, 120)
    stopped_at = time.monotonic()
    ha.pg.stop()
    unavailable = None
    while unavailable is None and time.monotonic() - stopped_at < 30:
        try:
            c.list()
        except ApiError as err:
            unavailable = err.status
        time.sleep(0.3)
    assert unavailable == 503
    time.sleep(max(0.0, 8 - (time.monotonic() - stopped_at)))
    _start_pg(ha.pg.data_dir)
    restarted_at = time.monotonic()
    recovered = _wait_http(ha.lb_url + "/health", 120)
    deadline = time.monotonic() + 60
    while True:
        try:
            c.list()
            break
        except ApiError:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    api_back = time.monotonic() - restarted_at
    recs = _wait_all(c, ids, TERMINAL, 240)
    _report("PostgreSQL restarted", recs, ids, {
        "down_s": round(restarted_at - stopped_at, 1), "status_while_down": unavailable,
        "health_back_after_s": round(recovered, 1), "api_back_after_s": round(api_back, 1),
    })  # fmt: skip
    assert [recs[i]["state"] for i in ids] == ["SUCCEEDED"] * len(ids), recs
