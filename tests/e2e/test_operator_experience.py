"""The operator's view on the real stack: the `aegis` command piped and under an 80-column
pseudo-terminal, waiting and re-attaching, the habits people bring (id prefixes, log tails,
labels, contexts, stdin), Ray's own CLI with `aegis env`, metrics through a real Prometheus,
Temporal's search attributes, and the cluster's event feed."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aegis_ray import Client
from aegis_ray.adapters.prometheus import PrometheusServer
from aegis_ray.node.stack import UpState
from tests.e2e.conftest import AEGIS, REPO, Stack
from tests.e2e.manifests import agent_yaml
from tests.e2e.test_executions import wait_state

pytestmark = pytest.mark.e2e
PROMETHEUS_PORT = 21090
LONG_LINE = '{"data": "' + "0" * 200 + '"}'
# sh prints LONG_LINE: 200 zeros inside a JSON object, one line.
LONG_SCRIPT = r'z=$(printf "%0200d" 0); echo "{\"data\": \"$z\"}"'


def long_line_agent() -> str:
    # A JSON string is a YAML double-quoted scalar: the script's quotes survive as written.
    return agent_yaml("long-line-agent", "SCRIPT").replace("'SCRIPT'", json.dumps(LONG_SCRIPT))


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def in_pty(stack: Stack, *args: str, columns: int = 80, timeout: float = 60) -> tuple[int, str]:
    """Run `aegis ARGS` on a pseudo-terminal of `columns` columns; its exit code and screen
    text (colours and cursor codes removed)."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in stack.env.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [*AEGIS, *args], env=env, cwd=REPO, stdin=secondary, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the other side closed: the command ended
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(primary)
    code = proc.wait(timeout=10)
    return code, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


@pytest.fixture(scope="module")
def runs(stack: Stack) -> dict[str, dict]:
    """A few finished executions to look at: one that succeeds, one that fails with a reason,
    one that prints a 200-character line."""
    c = stack.client()
    out = {}
    for key, text in (
        ("hello", (REPO / "examples/hello-agent.yaml").read_text()),
        ("failing", (REPO / "examples/failing-agent.yaml").read_text()),
        ("long", long_line_agent()),
    ):
        rec = c.submit(text, source=f"{key}.yaml").to_json()
        out[key] = wait_state(c, rec["id"], {"SUCCEEDED", "FAILED", "TIMED_OUT"})
    return out


# ------------------------------------------------------------------ output


def test_piped_tables_are_never_cut(stack: Stack, runs: dict[str, dict]) -> None:
    failing = runs["failing"]
    listed = stack.aegis("list", check=True).stdout
    header = listed.splitlines()[0].split()
    assert header == ["ID", "NAME", "STATE", "NODE", "EXIT", "AGE", "REASON"]
    row = next(line for line in listed.splitlines() if line.startswith(failing["id"][:8]))
    assert failing["node_id"] in row and failing["reason"] in row and " 3 " in row
    assert failing["id"] not in listed  # short ids in tables
    wide = stack.aegis("list", "-o", "wide", check=True).stdout
    assert failing["id"] in wide and "ATTEMPT" in wide and "CREATED" in wide
    (node,) = stack.client().nodes().to_json()["items"]
    nodes = stack.aegis("nodes", check=True).stdout
    assert node["node_id"] in nodes.splitlines()[1] and "ready" in nodes
    assert "…" not in listed + nodes and "\x1b" not in listed + nodes


def test_tables_fit_an_80_column_terminal(stack: Stack, runs: dict[str, dict]) -> None:
    code, screen = in_pty(stack, "list", "--limit", "5")
    assert code == 0, screen
    lines = [line for line in screen.splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].split()[:6] == ["ID", "NAME", "STATE", "NODE", "EXIT", "AGE"]
    failing = next(line for line in lines if line.startswith(runs["failing"]["id"][:8]))
    assert runs["failing"]["node_id"] in failing and "FAILED" in failing
    code, screen = in_pty(stack, "nodes")
    assert code == 0
    lines = [line for line in screen.splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in lines), lines
    node_id = stack.client().nodes().items[0].node_id
    assert lines[1].startswith(node_id)  # the node's name is whole, not "N…"


def test_agent_output_is_written_verbatim(stack: Stack) -> None:
    manifest = Path(tempfile.mkdtemp()) / "long.yaml"
    manifest.write_text(long_line_agent())
    piped = stack.aegis("submit", str(manifest), "--follow")
    assert piped.returncode == 0, piped.stderr
    assert LONG_LINE in piped.stdout.splitlines()
    code, screen = in_pty(stack, "submit", str(manifest), "--follow", timeout=120)
    assert code == 0, screen
    assert LONG_LINE in screen.splitlines()  # one line, however narrow the terminal


# ------------------------------------------------------------------ wait and re-attach


def test_wait_and_logs_follow_exit_with_the_execution_code(
    stack: Stack, runs: dict[str, dict]
) -> None:
    assert stack.aegis("wait", runs["hello"]["id"]).returncode == 0
    failed = runs["failing"]["id"]
    assert stack.aegis("wait", failed).returncode == 1
    follow = stack.aegis("logs", "-f", failed)
    assert follow.returncode == 1 and "boom" in follow.stdout
    rec = stack.client().submit(agent_yaml("napper", "sleep 300", timeout="600s")).to_json()
    still = stack.aegis("wait", rec["id"], "--timeout", "2s")
    assert still.returncode == 75 and "still not finished" in still.stderr
    stack.client().cancel(rec["id"])
    assert stack.aegis("wait", rec["id"]).returncode == 130


def test_ctrl_c_on_submit_follow_leaves_it_running(stack: Stack, tmp_path: Path) -> None:
    manifest = tmp_path / "sleeper.yaml"
    manifest.write_text(agent_yaml("ctrl-c-sleeper", "echo up; sleep 300", timeout="600s"))
    proc = subprocess.Popen(
        [*AEGIS, "submit", str(manifest), "-f"],
        env=stack.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 120
    while "up" not in seen.splitlines():
        assert time.monotonic() < deadline, seen
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 75, err
    eid = re.search(r"submitted (\S+)", seen).group(1)  # type: ignore[union-attr]
    assert "keeps running" in err and f"aegis cancel {eid[:8]}" in err
    assert stack.client().get(eid).to_json()["state"] == "RUNNING"
    cancelled = stack.aegis("cancel", eid[:8], "--wait")
    assert cancelled.returncode == 130, cancelled.stdout + cancelled.stderr
    again = stack.aegis("cancel", eid)
    assert again.returncode == 0 and "already ended" in again.stdout


def test_plain_submit_prints_the_next_steps(stack: Stack) -> None:
    done = stack.aegis("submit", "examples/hello-agent.yaml", check=True)
    eid = re.search(r"submitted (\S+)", done.stdout).group(1)  # type: ignore[union-attr]
    assert f"aegis logs -f {eid[:8]}" in done.stdout and f"aegis wait {eid[:8]}" in done.stdout
    assert stack.aegis("wait", eid).returncode == 0


# ------------------------------------------------------------------ habits


def test_id_prefixes_are_accepted_unless_ambiguous(stack: Stack, runs: dict[str, dict]) -> None:
    eid = runs["hello"]["id"]
    got = stack.aegis("get", eid[:8], "-o", "json", check=True)
    assert json.loads(got.stdout)["id"] == eid
    assert "hello from the aegis example agent" in stack.aegis("logs", eid[:6]).stdout
    twins = [uuid.UUID(f"abcd{n:04x}-0000-4000-8000-000000000000") for n in range(2)]
    _insert_executions(stack, twins)
    ambiguous = stack.aegis("get", "abcd")
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr
    assert str(twins[0]) in ambiguous.stderr and str(twins[1]) in ambiguous.stderr
    assert stack.aegis("get", "abcd0001", "-o", "json").returncode == 0
    assert stack.aegis("get", "ffff0000ffff").returncode == 4


def _insert_executions(stack: Stack, ids: list[uuid.UUID]) -> None:
    from aegis_ray.adapters.postgres.db import connect

    state = UpState.load(stack.home / "up.json")
    assert state is not None

    async def insert() -> None:
        pool = await connect(state.database_url)
        try:
            for eid in ids:
                await pool.execute(
                    "INSERT INTO executions (id, tenant_id, name, manifest, state, max_retries,"
                    " finished_at) VALUES ($1, 'default', 'twin', $2, 'FAILED', 0, now())"
                    " ON CONFLICT DO NOTHING",
                    eid,
                    {"metadata": {"name": "twin"}},
                )
        finally:
            await pool.close()

    asyncio.run(insert())


def test_logs_tail_since_and_timestamps(stack: Stack) -> None:
    c = stack.client()
    rec = c.submit(agent_yaml("counter", "for i in 1 2 3 4 5; do echo n$i; done")).to_json()
    wait_state(c, rec["id"], {"SUCCEEDED"})
    tail = stack.aegis("logs", rec["id"], "--tail", "2", check=True).stdout.splitlines()
    assert tail == ["n4", "n5"]
    stamped = stack.aegis("logs", rec["id"], "--since", "10m", "-t", check=True).stdout
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z n1$", stamped.splitlines()[0])
    assert stack.aegis("logs", rec["id"], "--since", "2099-01-01T00:00").stdout == ""
    follow = stack.aegis("logs", rec["id"], "--tail", "1", "-f", check=True)
    assert follow.stdout.splitlines() == ["n5"]


def test_list_by_label_and_from_stdin(stack: Stack, runs: dict[str, dict]) -> None:
    text = (REPO / "examples/hello-agent.yaml").read_text()
    done = stack.aegis("submit", "-", "-q", input=text)
    assert done.returncode == 0, done.stderr
    eid = done.stdout.strip()
    assert uuid.UUID(eid)
    labelled = json.loads(stack.aegis("list", "-l", "example=true", "-o", "json").stdout)
    ids = {e["id"] for e in labelled}
    assert eid in ids and runs["hello"]["id"] in ids and runs["long"]["id"] not in ids
    grpc = json.loads(
        stack.aegis("--api", "grpc", "list", "-l", "example=true", "-o", "json").stdout
    )
    assert {e["id"] for e in grpc} == ids
    assert json.loads(stack.aegis("list", "-l", "example=nope", "-o", "json").stdout) == []
    assert stack.aegis("list", "-l", "no-equals-sign").returncode == 2
    plan = stack.aegis("plan", "-", input=text)
    assert plan.returncode == 0 and "NODE" in plan.stdout


def test_node_get_version_completion_and_examples(stack: Stack) -> None:
    node_id = stack.client().nodes().items[0].node_id
    node = json.loads(stack.aegis("node", "get", node_id, "-o", "json", check=True).stdout)
    assert node["node_id"] == node_id and node["status"] == "ready"
    assert stack.aegis("node", "get", "no-such-node").returncode == 4
    assert re.match(r"^aegis \d+\.\d+\.\d+", stack.aegis("--version", check=True).stdout)
    env = stack.env | {
        "_AEGIS_COMPLETE": "complete_bash",
        "COMP_WORDS": "aegis wa",
        "COMP_CWORD": "1",
    }
    completion = subprocess.run(
        [*AEGIS], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert completion.stdout.split() == ["wait"]
    for command in (["submit"], ["logs"], ["events"], ["node", "get"], ["context", "set"]):
        assert "Examples" in stack.aegis(*command, "--help", check=True).stdout, command


def test_contexts_name_clusters_and_refuse_unknown_keys(stack: Stack, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    token = tmp_path / "lab.token"
    token.write_text(stack.token)
    elsewhere = {k: v for k, v in stack.env.items() if not k.startswith("AEGIS_")}
    env = elsewhere | {"AEGIS_CONFIG": str(config), "AEGIS_HOME": str(tmp_path / "empty")}

    def aegis(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*AEGIS, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )

    made = aegis("context", "set", "lab", "--api-url", stack.api_url, "--token-file", str(token))
    assert made.returncode == 0, made.stderr
    grpc_address = f"127.0.0.1:{stack.env['AEGIS_GRPC_PORT']}"
    aegis("context", "set", "lab-grpc", "--api", "grpc", "--grpc-address", grpc_address)
    aegis("context", "set", "lab-grpc", "--token-file", str(token))
    listed = aegis("context", "list").stdout
    assert "* lab" in " ".join(listed.split()) and "lab-grpc" in listed
    assert aegis("list", "--limit", "1").returncode == 0
    assert aegis("--context", "lab-grpc", "nodes", "-o", "json").returncode == 0
    assert aegis("context", "use", "lab-grpc").returncode == 0
    assert aegis("status").returncode == 0 and "gRPC" in aegis("status").stdout
    config.write_text(config.read_text() + "  typo:\n    api_urll: http://x\n")
    refused = aegis("list")
    assert refused.returncode == 2
    assert str(config) in refused.stderr and "api_urll" in refused.stderr
    assert "http://x" in refused.stderr
    config.write_text(config.read_text().split("  typo:")[0])
    unknown = aegis("--context", "nope", "list")
    assert unknown.returncode == 2 and "no context 'nope'" in unknown.stderr
    # A request that takes longer than --timeout is given up, as an unreachable API.
    slow = aegis("--timeout", "0.001", "--context", "lab", "list")
    assert slow.returncode == 3 and "not reachable" in slow.stderr


# ------------------------------------------------------------------ Ray's own tools


def test_ray_cli_works_with_aegis_env(stack: Stack) -> None:
    exports = stack.aegis("env", check=True).stdout
    values = dict(re.findall(r"^export (\w+)=(\S+)$", exports, re.M))
    assert values["RAY_AUTH_MODE"] == "token"
    assert values["RAY_AUTH_TOKEN_PATH"] == str(stack.home / "ray_auth_token")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | values

    def ray(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "ray"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    assert "Node status" in ray("status").stdout
    actors = json.loads(ray("list", "actors", "--format", "json", "--detail").stdout)
    node_id = stack.client().nodes().items[0].node_id
    assert f"aegis-node-agent:{node_id}" in {a.get("name") for a in actors}
    jobs = json.loads(ray("list", "jobs", "--format", "json", "--detail").stdout)
    metadata = [j.get("metadata") or {} for j in jobs]
    assert any(m.get("job_name") == "aegis up" for m in metadata), metadata
    shown = stack.aegis("dashboard", check=True).stdout
    assert f"127.0.0.1:{stack.env['AEGIS_RAY_DASHBOARD_PORT']}" in shown
    assert str(stack.home / "ray_auth_token") in shown
    assert str(stack.home / "ray_auth_token") in stack.aegis("status").stdout


# ------------------------------------------------------------------ metrics


@pytest.fixture
def prometheus(stack: Stack, runs: dict[str, dict]) -> Iterator[PrometheusServer]:
    state = UpState.load(stack.home / "up.json")
    assert state is not None and state.ray_session_dir
    data = Path(tempfile.mkdtemp(prefix="aegis-prometheus-"))
    server = PrometheusServer(
        data,
        port=PROMETHEUS_PORT,
        ray_session_dir=state.ray_session_dir,
        api_address=f"127.0.0.1:{stack.env['AEGIS_API_PORT']}",
        api_token_file=stack.home / "admin.token",
    )
    server.start()
    try:
        yield server
    finally:
        assert server.stop()  # by its PID
        shutil.rmtree(data, ignore_errors=True)


def _query(server: PrometheusServer, promql: str) -> float:
    r = httpx.get(f"{server.url}/api/v1/query", params={"query": promql}, timeout=10)
    r.raise_for_status()
    result = r.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def test_prometheus_sees_the_execution_counters_and_latency(
    stack: Stack, prometheus: PrometheusServer
) -> None:
    api = '{job="aegis-api"}'
    queries = {
        "finished (API)": f"sum(aegis_executions_finished_total{api})",
        "failed (API)": 'sum(aegis_executions_finished_total{job="aegis-api",state="FAILED"})',
        "submitted (API)": f"sum(aegis_executions_submitted_total{api})",
        "latency count": f"sum(aegis_api_request_seconds_count{api})",
        "latency p90": "histogram_quantile(0.9, sum by (le) "
        f"(rate(aegis_api_request_seconds_bucket{api}[1m])))",
        "submit->running": f"sum(aegis_submit_to_running_seconds_count{api})",
        "finished (Ray)": 'sum(ray_aegis_executions_finished_total{job="ray"})',
        "agent lines (Ray)": 'sum(ray_aegis_node_agent_log_lines_total{job="ray"})',
        "nodes ready": 'sum(aegis_nodes{job="aegis-api",status="ready"})',
    }
    deadline = time.monotonic() + 120
    values: dict[str, float] = {}
    while time.monotonic() < deadline:
        stack.client().list(limit=1)  # keeps requests coming for the rate()
        values = {name: _query(prometheus, q) for name, q in queries.items()}
        if all(v > 0 for v in values.values()):
            break
        time.sleep(3)
    assert all(v > 0 for v in values.values()), values


def test_api_metrics_need_an_admin_token(stack: Stack) -> None:
    assert httpx.get(f"{stack.api_url}/metrics").status_code == 401
    text = httpx.get(
        f"{stack.api_url}/metrics", headers={"Authorization": f"Bearer {stack.token}"}
    ).text
    assert "# TYPE aegis_executions_finished_total counter" in text
    assert "aegis_api_request_seconds_bucket" in text


# ------------------------------------------------------------------ Temporal


def test_temporal_finds_runs_by_agent_and_node(stack: Stack, runs: dict[str, dict]) -> None:
    temporal = str(Path(sys.executable).parent / "temporal")
    address = f"127.0.0.1:{stack.env['AEGIS_TEMPORAL_PORT']}"
    node_id = runs["hello"]["node_id"]
    query = f'AegisAgent="hello-agent" AND AegisNode="{node_id}" AND AegisTenant="default"'
    deadline = time.monotonic() + 30  # the visibility store is eventually consistent
    while True:
        done = subprocess.run(
            [temporal, "workflow", "list", "--address", address, "--query", query,
             "--output", "json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        found = set(re.findall(r'"workflowId":\s*"([^"]+)"', done.stdout))
        if runs["hello"]["workflow_id"] in found or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert runs["hello"]["workflow_id"] in found
    assert runs["failing"]["workflow_id"] not in found
    from temporalio.client import Client as TemporalClient

    async def described() -> tuple[str | None, dict]:
        client = await TemporalClient.connect(address)
        desc = await client.get_workflow_handle(runs["hello"]["workflow_id"]).describe()
        return await desc.static_summary(), await desc.memo()

    summary, memo = asyncio.run(described())
    assert summary == "hello-agent (tenant default)"
    assert memo == {
        "agent": "hello-agent",
        "tenant": "default",
        "execution_id": runs["hello"]["id"],
    }


# ------------------------------------------------------------------ the cluster feed


def test_events_all_shows_nodes_and_executions_scoped_by_tenant(
    stack: Stack, runs: dict[str, dict]
) -> None:
    node_id = runs["hello"]["node_id"]
    feed = json.loads(stack.aegis("events", "--all", "--limit", "1000", "-o", "json").stdout)
    assert any(e["kind"] == "node" and e["node_id"] == node_id and e["message"] == "joined"
               for e in feed)  # fmt: skip
    hello = [e for e in feed if e["execution_id"] == runs["hello"]["id"]]
    assert [e["to_state"] for e in hello] == [
        "PENDING", "SCHEDULED", "STARTING", "RUNNING", "SUCCEEDED"
    ]  # fmt: skip
    grpc = json.loads(stack.aegis("--api", "grpc", "events", "--all", "-o", "json").stdout)
    assert grpc[-1]["id"] == feed[-1]["id"]
    table = stack.aegis("events", "--all", "--limit", "1000", check=True).stdout
    assert "joined" in table and "SUCCEEDED" in table
    other = httpx.post(
        f"{stack.api_url}/v1/tokens",
        json={"role": "user", "tenant_id": "t2", "description": "another tenant"},
        headers={"Authorization": f"Bearer {stack.token}"},
    ).json()["token"]
    with Client.rest(stack.api_url, other) as c:
        theirs = c.cluster_events(limit=1000).to_json()["items"]
    assert theirs == []  # another tenant's executions and the nodes are not theirs


def test_events_all_follow_streams_state_changes_and_drains(stack: Stack) -> None:
    proc = subprocess.Popen(
        [*AEGIS, "events", "--all", "-f", "--limit", "1", "-o", "json"],
        env=stack.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[dict] = []

    def collect() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(json.loads(line))

    threading.Thread(target=collect, daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while not seen:  # the latest event first: from there on, nothing is missed
            assert time.monotonic() < deadline, proc.stderr
            time.sleep(0.2)
        c = stack.client()
        rec = c.submit(agent_yaml("feed-watch", "echo hi")).to_json()
        wait_state(c, rec["id"], {"SUCCEEDED"})
        node_id = c.nodes().items[0].node_id
        assert stack.aegis("node", "drain", node_id).returncode == 0
        assert stack.aegis("node", "undrain", node_id).returncode == 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [e["to_state"] for e in list(seen) if e["execution_id"] == rec["id"]]
            drains = [e["to_state"] for e in list(seen) if e["kind"] == "node"]
            if "SUCCEEDED" in states and drains[-2:] == ["draining", "ready"]:
                break
            time.sleep(0.5)
        assert "SUCCEEDED" in states and drains[-2:] == ["draining", "ready"], seen
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
