"""An execution's whole path on the real stack: REST -> Temporal -> placement group -> launch
actor -> Docker, with state, events and logs in PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from aegis_ray import ApiError, Client
from tests.e2e.conftest import Stack
from tests.e2e.manifests import agent_yaml

pytestmark = pytest.mark.e2e
EXECUTION_LABEL = "ai.100monkeys.aegis/execution-id"


def wait_state(c: Client, eid: str, states: set[str], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    rec = c.get(eid).to_json()
    while rec["state"] not in states:
        assert time.monotonic() < deadline, f"still {rec['state']} after {timeout}s: {rec}"
        time.sleep(0.3)
        rec = c.get(eid).to_json()
    return rec


def _environ(proc: Any) -> dict[str, str]:
    try:
        return dict(proc.environ())
    except Exception:  # gone, or not ours to read
        return {}


def containers_of(eid: str) -> list:
    return docker.from_env().containers.list(
        all=True, filters={"label": f"{EXECUTION_LABEL}={eid}"}
    )


def submit(stack: Stack, text: str, name: str = "m.yaml") -> dict:
    return stack.client().submit(text, source=name).to_json()


def test_hello_agent_runs_and_follow_exits_zero_with_its_output(stack: Stack) -> None:
    done = stack.aegis("submit", "examples/hello-agent.yaml", "--follow")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Say hello to the cluster" in done.stdout
    assert "SUCCEEDED" in done.stdout
    eid = stack.client().list(name="hello-agent").items[0].id
    rec = stack.client().get(eid).to_json()
    assert rec["state"] == "SUCCEEDED" and rec["exit_code"] == 0
    events = stack.client().events(eid).to_json()["items"]
    states = [e["to_state"] for e in events if e.get("to_state")]
    assert states == ["PENDING", "SCHEDULED", "STARTING", "RUNNING", "SUCCEEDED"]


def test_logs_keep_both_streams_in_order(stack: Stack) -> None:
    script = "for i in $(seq 1 300); do echo line-$i; done; echo oops >&2"
    rec = submit(stack, agent_yaml("many-lines", script))
    rec = wait_state(stack.client(), rec["id"], {"SUCCEEDED", "FAILED"})
    assert rec["state"] == "SUCCEEDED"
    logs = stack.client().log_page(rec["id"]).to_json()["items"]
    stdout = [r["line"] for r in logs if r["stream"] == "stdout"]
    assert stdout == [f"line-{i}" for i in range(1, 301)]
    assert [r["line"] for r in logs if r["stream"] == "stderr"] == ["oops"]
    cli = stack.aegis("logs", rec["id"])
    assert cli.returncode == 0 and "line-300" in cli.stdout


def test_failing_agent_ends_failed_with_its_exit_code(stack: Stack) -> None:
    done = stack.aegis("submit", "examples/failing-agent.yaml", "--follow", "-o", "json")
    assert done.returncode == 1, done.stdout + done.stderr
    eid = stack.client().list(name="failing-agent").items[0].id
    rec = stack.client().get(eid).to_json()
    assert rec["state"] == "FAILED" and rec["exit_code"] == 3
    assert "exit code 3" in rec["reason"]


def test_agent_past_its_timeout_ends_timed_out(stack: Stack) -> None:
    done = stack.aegis("submit", "examples/timeout-agent.yaml", "--follow")
    assert done.returncode == 124, done.stdout + done.stderr
    eid = stack.client().list(name="timeout-agent").items[0].id
    rec = stack.client().get(eid).to_json()
    assert rec["state"] == "TIMED_OUT"
    started = rec["started_at"]
    assert started and rec["finished_at"] > started
    assert containers_of(eid) == []


def test_cancel_while_running_stops_the_container(stack: Stack) -> None:
    rec = submit(stack, agent_yaml("sleeper", "echo up; sleep 300", timeout="600s"))
    c = stack.client()
    wait_state(c, rec["id"], {"RUNNING"})
    assert len(containers_of(rec["id"])) == 1
    assert stack.aegis("cancel", rec["id"]).returncode == 0
    final = wait_state(c, rec["id"], {"CANCELLED", "FAILED", "SUCCEEDED"}, timeout=60)
    assert final["state"] == "CANCELLED"
    assert containers_of(rec["id"]) == []
    with pytest.raises(ApiError) as again:
        c.cancel(rec["id"])
    assert again.value.status == 409  # a finished execution never changes again


def test_container_limits_are_visible_in_docker_inspect(stack: Stack) -> None:
    rec = submit(stack, agent_yaml("limits", "sleep 300", cpu=300, memory="48Mi", timeout="600s"))
    c = stack.client()
    wait_state(c, rec["id"], {"RUNNING"})
    try:
        (container,) = containers_of(rec["id"])
        host = container.attrs["HostConfig"]
        assert host["NanoCpus"] == 300_000_000
        assert host["Memory"] == 48 * 2**20
        assert host["PidsLimit"] and host["PidsLimit"] > 0
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in " ".join(host["SecurityOpt"] or [])
        assert host["NetworkMode"] == "none"
        assert not any("docker.sock" in (b or "") for b in host.get("Binds") or [])
        assert container.labels[EXECUTION_LABEL] == rec["id"]
    finally:
        c.cancel(rec["id"])
        wait_state(c, rec["id"], {"CANCELLED"}, timeout=60)


def test_container_and_placement_group_are_gone_afterwards(stack: Stack, ray_driver: None) -> None:
    from ray.util.placement_group import placement_group_table

    rec = submit(stack, agent_yaml("tidy", "echo tidy"))
    rec = wait_state(stack.client(), rec["id"], {"SUCCEEDED", "FAILED"})
    assert rec["state"] == "SUCCEEDED"
    assert containers_of(rec["id"]) == []
    name = f"aegis-{rec['id']}-a1"
    deadline = time.monotonic() + 20
    while True:
        groups = [g for g in placement_group_table().values() if g["name"] == name]
        assert groups, "the attempt's placement group was never created"
        if all(g["state"] == "REMOVED" for g in groups):
            break
        assert time.monotonic() < deadline, groups
        time.sleep(0.5)


def test_missing_image_with_pull_policy_never_fails_with_the_reason(stack: Stack) -> None:
    text = agent_yaml("no-image", "true", image="aegis-examples/absent:1.0")
    rec = wait_state(stack.client(), submit(stack, text)["id"], {"FAILED", "SUCCEEDED"})
    assert rec["state"] == "FAILED"
    assert "image_not_found" in rec["reason"] and "aegis-examples/absent:1.0" in rec["reason"]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (
            "kind: Agent\napiVersion: 100monkeys.ai/v1\nmetadata: {name: x}\nspec: {runtime: [}\n",
            "",
        ),
        (agent_yaml("bad-key", "true").replace("  task:", "  colour: red\n  task:"), "spec.colour"),
        (agent_yaml("bad-mem", "true", memory="-5Mi"), "spec.security.resources.memory"),
        (agent_yaml("bad-cpu", "true", cpu=10_000_000), "spec.security.resources.cpu"),
        (agent_yaml("bad-image", "true", image="Not A/Valid Image"), "spec.runtime.image"),
        (agent_yaml("x", "true").replace("kind: Agent", "kind: Robot"), "kind"),
        (agent_yaml("x", "true").replace("100monkeys.ai/v1", "v0"), "apiVersion"),
    ],
)
def test_bad_manifest_is_rejected_with_field_path_and_no_row(
    stack: Stack, text: str, path: str
) -> None:
    c = stack.client()
    before = len(c.list(limit=500).to_json()["items"])
    with pytest.raises(ApiError) as err:
        c.submit(text, source="bad.yaml")
    assert err.value.status == 422
    body = err.value.body
    assert body["error"] == "invalid_manifest" and body["source"] == "bad.yaml"
    assert any(p["path"] == path for p in body["problems"]), body
    assert len(c.list(limit=500).to_json()["items"]) == before


def test_cli_rejects_a_bad_manifest_with_exit_2_naming_file_field_value(
    stack: Stack, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(agent_yaml("bad-mem", "true", memory="12Zi"))
    done = stack.aegis("submit", str(bad))
    assert done.returncode == 2
    assert str(bad) in done.stderr and "spec.security.resources.memory" in done.stderr
    assert "12Zi" in done.stderr


def test_manifest_no_node_could_ever_fit_is_rejected_with_reasons(stack: Stack) -> None:
    c = stack.client()
    before = len(c.list(limit=500).to_json()["items"])
    with pytest.raises(ApiError) as err:
        c.submit(agent_yaml("huge", "true", memory="3Ti"), source="huge.yaml")
    assert err.value.status == 422 and err.value.body["error"] == "unschedulable"
    reasons = [r for n in err.value.body["plan"]["nodes"] for r in n["reasons"]]
    assert any(r["check"] == "memory" for r in reasons), reasons
    assert len(c.list(limit=500).to_json()["items"]) == before


def test_api_refuses_requests_without_a_valid_token(stack: Stack) -> None:
    for token in (None, "aegis_not-a-real-token"):
        with pytest.raises(ApiError) as err:
            Client.rest(stack.api_url, token).list()
        assert err.value.status == 401
    assert Client.rest(stack.api_url, None).health().to_json()["status"] == "ok"


def test_list_filters_by_state_and_pages(stack: Stack) -> None:
    c = stack.client()
    ids = [submit(stack, agent_yaml("pager", "true"))["id"] for _ in range(3)]
    for eid in ids:
        wait_state(c, eid, {"SUCCEEDED", "FAILED"})
    page = c.list(name="pager", limit=2).to_json()
    assert len(page["items"]) == 2 and page["next_before"]
    rest = c.list(name="pager", before=page["next_before"]).to_json()
    seen = [r["id"] for r in page["items"] + rest["items"]]
    assert sorted(seen) == sorted(ids)
    succeeded = c.list(states=["SUCCEEDED"], name="pager").to_json()["items"]
    assert {r["id"] for r in succeeded} == set(ids)
    assert c.list(states=["FAILED"], name="pager").to_json()["items"] == []


def test_get_unknown_execution_is_404_and_cli_exit_4(stack: Stack) -> None:
    with pytest.raises(ApiError) as err:
        stack.client().get("00000000-0000-0000-0000-000000000000")
    assert err.value.status == 404
    assert stack.aegis("get", "not-a-uuid").returncode == 4


def test_status_reports_every_service(stack: Stack) -> None:
    done = stack.aegis("status", "-o", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    import json

    report = json.loads(done.stdout)
    assert report["api"]["database"] == "ok" and report["api"]["temporal"] == "ok"
    assert report["api"]["secrets"] == "ok"
    assert report["up"]["started"] == {
        "postgres": True,
        "temporal": True,
        "openbao": True,
        "ray": True,
        "redis": True,
        "gcs_supervisor": True,
    }
    assert ":***@" in report["up"]["database_url"]  # the database password is never printed
    assert len(report["nodes"]) == 1 and report["nodes"][0]["role"] == "hybrid"


def test_up_is_idempotent(stack: Stack) -> None:
    done = stack.aegis("up")
    assert done.returncode == 0, done.stdout + done.stderr
    assert stack.client().health().to_json()["status"] == "ok"


def test_execution_waits_for_capacity_with_the_reason_then_runs(stack: Stack) -> None:
    c = stack.client()
    # The test node has 2 CPUs: two executions of 1.5 CPUs cannot run at once.
    first = submit(stack, agent_yaml("big-first", "sleep 300", cpu=1500, timeout="600s"))
    wait_state(c, first["id"], {"RUNNING"})
    second = submit(stack, agent_yaml("big-second", "echo second", cpu=1500))
    deadline = time.monotonic() + 30
    while "waiting for capacity" not in (c.get(second["id"]).to_json()["reason"] or ""):
        assert time.monotonic() < deadline, c.get(second["id"])
        time.sleep(0.5)
    rec = c.get(second["id"]).to_json()
    assert rec["state"] == "PENDING" and "cpu" in rec["reason"]
    get = stack.aegis("get", second["id"])
    assert "waiting for capacity" in get.stdout
    c.cancel(first["id"])
    assert wait_state(c, second["id"], {"SUCCEEDED", "FAILED"})["state"] == "SUCCEEDED"


def test_openapi_document_lists_the_routes(stack: Stack) -> None:
    doc = httpx.get(f"{stack.api_url}/openapi.json").json()
    for path in ("/v1/executions", "/v1/executions/{execution_id}/logs", "/v1/nodes", "/health"):
        assert path in doc["paths"]


def test_reconciler_ends_an_execution_whose_workflow_was_terminated(stack: Stack) -> None:
    import subprocess
    import sys
    from pathlib import Path

    c = stack.client()
    rec = submit(stack, agent_yaml("orphan", "sleep 300", timeout="600s"))
    rec = wait_state(c, rec["id"], {"RUNNING"})
    temporal = str(Path(sys.executable).parent / "temporal")
    done = subprocess.run(
        [temporal, "workflow", "terminate", "--workflow-id", rec["workflow_id"],
         "--address", f"127.0.0.1:{stack.env['AEGIS_TEMPORAL_PORT']}", "--reason", "test"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    final = wait_state(c, rec["id"], {"FAILED", "SUCCEEDED", "CANCELLED"}, timeout=90)
    assert final["state"] == "FAILED" and "reconciler" in final["reason"]
    deadline = time.monotonic() + 30
    while containers_of(rec["id"]):
        assert time.monotonic() < deadline, "container outlived its orphaned execution"
        time.sleep(1)


def test_nodes_show_heartbeat_and_executions(stack: Stack) -> None:
    deadline = time.monotonic() + 30
    while True:
        (node,) = stack.client().nodes().to_json()["items"]
        if node.get("last_heartbeat"):
            break
        assert time.monotonic() < deadline, node
        time.sleep(1)
    assert node["status"] == "ready" and node["registered"] is True
    assert "executions" in node
    table = stack.aegis("nodes")
    assert table.returncode == 0 and node["node_id"] in table.stdout and "ready" in table.stdout


def test_execution_survives_a_restart_of_the_control_plane_worker(stack: Stack) -> None:
    import os
    import signal

    import psutil

    c = stack.client()
    rec = submit(
        stack, agent_yaml("outlives-worker", "echo begin; sleep 15; echo end", timeout="300s")
    )
    wait_state(c, rec["id"], {"RUNNING"})
    # This stack's replica only: other stacks may run on the machine (their processes carry
    # another AEGIS_HOME in their environment).
    workers = [
        p for p in psutil.process_iter(["cmdline"])
        if "ServeReplica:aegis:AegisAPI" in " ".join(p.info["cmdline"] or [])
        and _environ(p).get("AEGIS_HOME") == str(stack.home)
    ]  # fmt: skip
    assert workers, "no AegisAPI replica (API + Temporal worker) found"
    for p in workers:
        os.kill(p.pid, signal.SIGKILL)
    # Serve restarts the replica; Temporal retries the running activity there, which finds the
    # placement group by name and follows the same container through the node agent to its end.
    final = wait_state(c, rec["id"], {"SUCCEEDED", "FAILED"}, timeout=180)
    assert final["state"] == "SUCCEEDED", final
    assert final["attempt"] == 1
    lines = [r["line"] for r in c.log_page(rec["id"]).to_json()["items"]]
    assert "begin" in lines and "end" in lines


def test_docs_page_needs_no_cdn_its_assets_are_served_by_the_api(stack: Stack) -> None:
    import re

    page = httpx.get(f"{stack.api_url}/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert assets and all(url.startswith("/") for url in assets), assets
    for url in assets:
        assert httpx.get(f"{stack.api_url}{url}").status_code == 200, url
    doc = httpx.get(f"{stack.api_url}/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_cli_names_the_parameter_fastapi_refuses(stack: Stack) -> None:
    done = stack.aegis("list", "--limit", "0")
    assert done.returncode == 2
    assert "query.limit" in done.stderr and "HTTP 422 (HTTP 422)" not in done.stderr


def test_readme_sdk_example_runs_as_written(stack: Stack) -> None:
    import re
    import subprocess
    import sys

    from tests.e2e.conftest import REPO

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Python SDK") :]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)[:1]
    assert len(code.strip().splitlines()) == 3, code
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SUCCEEDED"


def test_async_client_runs_an_agent_and_reads_its_output(stack: Stack) -> None:
    import asyncio

    from aegis_ray import AsyncClient
    from aegis_ray.contract.executions import End, LogLine

    async def run() -> tuple[str, list[str], list[object]]:
        async with AsyncClient.rest(stack.api_url, stack.token) as c:
            rec = await c.run(agent_yaml("async-agent", "echo from-async"), timeout=120)
            lines = [ln.line async for ln in c.logs(rec.id)]
            items = [item async for item in c.watch(rec.id)]
            return rec.state, lines, items

    state, lines, items = asyncio.run(run())
    assert state == "SUCCEEDED" and lines == ["from-async"]
    assert isinstance(items[-1], End) and items[-1].state == "SUCCEEDED"
    assert [i.line for i in items if isinstance(i, LogLine)] == ["from-async"]
