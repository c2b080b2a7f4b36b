"""Clients and input against the real stack (issue 11): `aegis submit --follow` rides out a
killed API replica and exits with the execution's code; every bad input of the issue is a 4xx
naming the field over REST, never a 500."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import psutil
import pytest

from aegis_ray import Client
from tests.e2e.conftest import AEGIS, REPO, Stack
from tests.e2e.manifests import agent_yaml
from tests.e2e.test_executions import _environ, submit, wait_state
from tests.e2e.test_grpc_api import GRPC_ADDRESS

pytestmark = pytest.mark.e2e


def api_replicas(stack: Stack) -> list[psutil.Process]:
    """This stack's AegisAPI replica processes (other stacks' carry another AEGIS_HOME)."""
    return [
        p for p in psutil.process_iter(["cmdline"])
        if "ServeReplica:aegis:AegisAPI" in " ".join(p.info["cmdline"] or [])
        and _environ(p).get("AEGIS_HOME") == str(stack.home)
    ]  # fmt: skip


def test_submit_follow_survives_a_killed_api_replica_and_exits_with_the_code(
    stack: Stack, tmp_path: os.PathLike[str]
) -> None:
    manifest = agent_yaml(
        "follows-through", "echo begin; sleep 12; echo end; exit 0", timeout="300s"
    )
    path = f"{tmp_path}/follow.yaml"
    with open(path, "w") as f:
        f.write(manifest)
    follower = subprocess.Popen(
        [*AEGIS, "submit", path, "--follow"], env=stack.env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        c = stack.client()
        deadline = time.monotonic() + 90
        rec = None
        while rec is None:
            assert time.monotonic() < deadline, "the followed execution never started"
            running = c.list(states=["RUNNING"], name="follows-through").items
            rec = running[0] if running else None
            time.sleep(0.3)
        replicas = api_replicas(stack)
        assert replicas, "no AegisAPI replica found"
        for p in replicas:
            os.kill(p.pid, signal.SIGKILL)
        out, err = follower.communicate(timeout=300)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, (out, err)
    assert "begin" in out and "end" in out, out
    final = wait_state(stack.client(), rec.id, {"SUCCEEDED", "FAILED"})
    assert final["state"] == "SUCCEEDED"


HELLO = (REPO / "examples" / "hello-agent.yaml").read_text()
MANIFESTS = {
    "memory .inf": (HELLO.replace("memory: 32Mi", "memory: .inf"), "spec.security.resources"),
    "timeout .nan": (HELLO.replace("timeout: 60s", "timeout: .nan"), "spec.execution.timeout"),
    "nested 5000": (
        HELLO.replace("name: world", "name: " + "[" * 5000 + "]" * 5000),
        "nested",
    ),
    "list as key": (HELLO.replace("  env:\n", "  env:\n    ? [a, b]\n    : 1\n"), "key"),
    "NUL": (HELLO.replace("GREETING: hello", 'GREETING: "a\\0b"'), "spec.env.GREETING"),
    "lone surrogate": (
        HELLO.replace('"Say hello to the cluster"', '"a\\ud800b"'),
        "spec.task.instruction",
    ),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
@pytest.mark.parametrize("route", ["/v1/executions", "/v1/plan"])
def test_bad_manifests_are_4xx_naming_the_field(stack: Stack, route: str, case: str) -> None:
    text, field = MANIFESTS[case]
    r = httpx.post(
        f"{stack.api_url}{route}", content=text.encode("utf-8", "surrogatepass"),
        headers={"Authorization": f"Bearer {stack.token}", "Content-Type": "application/yaml"},
    )  # fmt: skip
    assert 400 <= r.status_code < 500, r.text
    assert field in r.text, r.text


def test_a_manifest_over_the_limit_is_413_and_the_cli_refuses_it_first(
    stack: Stack, tmp_path: os.PathLike[str]
) -> None:
    big = HELLO + "# " + "x" * (1 << 20) + "\n"
    r = httpx.post(
        f"{stack.api_url}/v1/executions", content=big,
        headers={"Authorization": f"Bearer {stack.token}", "Content-Type": "application/yaml"},
    )  # fmt: skip
    assert r.status_code == 413, r.text
    path = f"{tmp_path}/big.yaml"
    with open(path, "w") as f:
        f.write(big)
    done = stack.aegis("submit", path)
    assert done.returncode == 2 and "at most" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/executions?name=%00", "name"),
        ("/v1/executions?label=a%3D%00", "label"),
        ("/v1/nodes/%00", "path"),
        ("/v1/nodes/%00/drain", "path"),
        ("/v1/executions?before=0001-01-01T00:00:00%2B01:00", "before"),
        ("/v1/events?after=1180591620717411303424", "after"),
        ("/v1/events?after=1180591620717411303424&follow=true", "after"),
    ],
)
def test_bad_parameters_are_400_naming_them(stack: Stack, url: str, field: str) -> None:
    r = httpx.get(f"{stack.api_url}{url}", headers={"Authorization": f"Bearer {stack.token}"})
    if url.endswith("/drain"):
        r = httpx.post(f"{stack.api_url}{url}", headers={"Authorization": f"Bearer {stack.token}"})
    assert r.status_code == 400, r.text
    assert field in r.json()["message"], r.text


@pytest.mark.parametrize("stream", ["events", "logs", "watch"])
def test_a_stream_checks_its_cursor_before_the_200(stack: Stack, stream: str) -> None:
    rec = submit(stack, agent_yaml("cursor-check", "echo hi"))
    param = "after_event" if stream == "watch" else "after"
    follow = "" if stream == "watch" else "&follow=true"
    r = httpx.get(
        f"{stack.api_url}/v1/executions/{rec['id']}/{stream}?{param}=1180591620717411303424"
        f"{follow}",
        headers={"Authorization": f"Bearer {stack.token}"},
    )
    assert r.status_code == 400, r.text
    assert param in r.json()["message"]


@pytest.mark.parametrize("ttl", ["NaN", "Infinity", "1e999"])
def test_a_non_finite_token_ttl_is_4xx_naming_it(stack: Stack, ttl: str) -> None:
    r = httpx.post(
        f"{stack.api_url}/v1/tokens", content='{"role": "user", "ttl_s": ' + ttl + "}",
        headers={"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert r.status_code in (400, 422), r.text
    assert "ttl_s" in r.json()["message"]


def _post(stack: Stack, text: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{stack.api_url}/v1/executions", content=text,
        headers={"Authorization": f"Bearer {stack.token}", "Content-Type": "application/yaml",
                 "Idempotency-Key": key},
    )  # fmt: skip


def test_a_submit_sent_again_with_its_idempotency_key_makes_one_execution(stack: Stack) -> None:
    key = f"retry-{time.time_ns()}"
    text = agent_yaml("idempotent", "echo once")
    first, again = _post(stack, text, key), _post(stack, text, key)
    assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
    assert first.json()["id"] == again.json()["id"]
    other = _post(stack, agent_yaml("idempotent", "echo another"), key)
    assert other.status_code == 409, other.text
    assert other.json()["error"] == "idempotency_conflict"
    assert other.json()["execution_id"] == first.json()["id"]
    # The CLI and gRPC carry the same key to the same execution.
    cli = [stack.aegis("submit", "-", "-q", "--idempotency-key", key, input=text) for _ in (1, 2)]
    assert cli[0].returncode == 0 and cli[0].stdout.strip() == first.json()["id"], cli[0].stderr
    assert cli[1].stdout == cli[0].stdout
    conflict = stack.aegis(
        "submit", "-", "--idempotency-key", key, input=agent_yaml("idempotent", "echo x")
    )
    assert conflict.returncode == 2 and "idempotency key" in conflict.stderr, conflict.stderr
    grpc_client = Client.grpc(GRPC_ADDRESS, stack.token)
    via_grpc = grpc_client.submit(text, source="m.yaml", idempotency_key=key)
    assert via_grpc.id == first.json()["id"]
    # Without a key, each submission is its own execution.
    assert stack.client().submit(text).id != stack.client().submit(text).id
