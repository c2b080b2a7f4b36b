"""Secrets on the real stack: the OpenBao server `aegis up` embeds, the secret API (REST, gRPC,
CLI), a secret reaching a container as env and as a tmpfs file, its value redacted from the
output and found nowhere else afterwards (PostgreSQL, Temporal, Ray, log files), tenants kept
apart, OpenBao stopped or sealed, a secret deleted after submit, and a restarted node agent.

The value of the main secret is new on every run, so finding it anywhere is a real leak.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import ray

from aegis_ray import ApiError, Client
from aegis_ray.adapters.openbao.server import EmbeddedOpenBao
from aegis_ray.adapters.postgres.embedded import EmbeddedPostgres, bin_dir
from aegis_ray.adapters.ray.head import ray_cli
from aegis_ray.adapters.temporal.dev_server import temporal_cli
from aegis_ray.core.naming import workflow_id
from aegis_ray.node.stack import UpState
from tests.e2e.conftest import AEGIS, REPO, Stack
from tests.e2e.manifests import agent_yaml
from tests.e2e.test_executions import EXECUTION_LABEL, wait_state
from tests.e2e.test_node_agent_executions import _node_agent
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.e2e
VALUE = f"sk-canary-{secrets.token_hex(12)}"
ORG = f"org-canary-{secrets.token_hex(6)}"
KEY_MARK = "[REDACTED:openai#api_key]"
ORG_MARK = "[REDACTED:openai#org]"
SECRET_REFS = """\
  env:
    OPENAI_API_KEY: {secret: "openai#api_key"}
    PLAIN: plain-text
  secret_files:
    - {secret: "openai#api_key", path: /run/secrets/api_key}
"""
# What the agent shows of its secret: digests (to prove it got the value without printing it),
# the file's mode, owner, mount and writability, then the value itself and its base64.
PROBE = (
    'echo "env-sha=$(printf %s "$OPENAI_API_KEY" | sha256sum | cut -d" " -f1)"; '
    'echo "file-sha=$(sha256sum < /run/secrets/api_key | cut -d" " -f1)"; '
    'echo "file=$(stat -c "%a %u" /run/secrets/api_key)"; '
    'echo "mount=$(grep " /run/secrets/api_key " /proc/mounts | cut -d" " -f3,4 | cut -d, -f1)"; '
    '(echo x > /run/secrets/api_key) 2>/dev/null && echo "writable=yes" || echo "writable=no"; '
    'echo "plain=$PLAIN"; '
    'echo "printed $OPENAI_API_KEY"; '
    'echo "b64 $(printf %s "$OPENAI_API_KEY" | base64)"'
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def leaks(text: str, value: str = VALUE) -> list[str]:
    """The forms of `value` found in `text` (it, and its base64)."""
    return [form for form in (value, b64(value)) if form in text]


def with_secrets(name: str, script: str, refs: str = SECRET_REFS, **kw: Any) -> str:
    return agent_yaml(name, script, **kw) + refs


def run(stack: Stack, text: str, timeout: float = 120) -> dict[str, Any]:
    c = stack.client()
    eid = c.submit(text, source="agent.yaml").id
    return wait_state(c, eid, {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED"}, timeout)


def lines_of(stack: Stack, eid: str) -> list[str]:
    return [ln.line for ln in stack.client().logs(eid)]


def aegis_in(stack: Stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI with something on its standard input."""
    return subprocess.run(
        [*AEGIS, *args], env=stack.env, cwd=REPO, input=stdin, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def stored_token(stack: Stack, tenant: str) -> str:
    """A user token of `tenant` written straight to the token table (as one issued before the
    API checked tenant ids)."""
    import asyncio

    import asyncpg

    from aegis_ray.adapters.postgres.tokens import TokenStore
    from aegis_ray.node.stack import UpState

    state = UpState.load(stack.home / "up.json")
    assert state is not None

    async def create() -> str:
        pool = await asyncpg.create_pool(state.database_url, min_size=1, max_size=1)
        try:
            return await TokenStore(pool).create(tenant_id=tenant, role="user", ttl_s=600)
        finally:
            await pool.close()

    return asyncio.run(create())


def token_of(stack: Stack, tenant: str) -> str:
    r = httpx.post(
        f"{stack.api_url}/v1/tokens",
        json={"role": "user", "tenant_id": tenant, "description": "secrets e2e"},
        headers={"Authorization": f"Bearer {stack.token}"},
    )
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def grpc_client(stack: Stack, token: str | None = None) -> Client:
    return Client.grpc(f"127.0.0.1:{stack.env['AEGIS_GRPC_PORT']}", token or stack.token)


@pytest.fixture(scope="module")
def bao(stack: Stack) -> Iterator[EmbeddedOpenBao]:
    server = EmbeddedOpenBao(stack.home / "openbao", port=int(stack.env["AEGIS_OPENBAO_PORT"]))
    yield server
    server.start()  # unsealed and running for whoever comes next


@pytest.fixture(scope="module")
def openai(stack: Stack) -> None:
    stack.client().put_secret("openai", {"api_key": VALUE, "org": ORG})


@pytest.fixture(scope="module")
def probed(stack: Stack, openai: None) -> dict[str, Any]:
    """An agent that got the secret as env and file, and printed it."""
    return run(stack, with_secrets("probe", PROBE))


# ---------------------------------------------------------------- the API, write-only


def test_embedded_openbao_is_a_real_server_whose_keys_are_private(stack: Stack) -> None:
    state = UpState.load(stack.home / "up.json")
    assert state is not None and state.started.get("openbao") is True
    assert state.openbao["address"] == f"http://127.0.0.1:{stack.env['AEGIS_OPENBAO_PORT']}"
    home = stack.home / "openbao"
    for name in ("unseal.key", "root.token", "secret-id"):
        assert (home / name).stat().st_mode & 0o777 == 0o600, name
    assert (home / "raft").is_dir()  # storage on disk: not `-dev`, not in memory
    health = httpx.get(f"{state.openbao['address']}/v1/sys/health").json()
    assert health["initialized"] and not health["sealed"]
    assert stack.client().health().to_json()["secrets"] == "ok"


def test_put_list_get_delete_show_names_keys_and_versions_never_values(
    stack: Stack, tmp_path: Path
) -> None:
    values = {"from_arg": f"arg-{secrets.token_hex(8)}", "from_file": f"f-{secrets.token_hex(8)}"}
    values |= {"from_stdin": f"in-{secrets.token_hex(8)}", "from_env": f"e-{secrets.token_hex(8)}"}
    key_file, env_file = tmp_path / "key.txt", tmp_path / "pairs.env"
    key_file.write_text(values["from_file"] + "\n")  # the final line break is not the value's
    env_file.write_text(f"# pairs\nfrom_env={values['from_env']}\n")
    put = aegis_in(
        stack, "secret", "put", "tools", f"from_arg={values['from_arg']}",
        f"from_file=@{key_file}", "-", "--from-file", str(env_file), "-o", "json",
        stdin=f"from_stdin={values['from_stdin']}\n",
    )  # fmt: skip
    assert put.returncode == 0, put.stderr
    shown = [put.stdout]
    for args in (["secret", "list", "-o", "yaml"], ["secret", "get", "tools"], ["secret", "list"]):
        done = stack.aegis(*args, check=True)
        assert "tools" in done.stdout and "from_stdin" in done.stdout
        shown.append(done.stdout)
    rest = stack.client().secret("tools").to_json()
    assert rest["keys"] == sorted(values) and rest["version"] == 1
    grpc = grpc_client(stack).secrets().to_json()
    assert [s["keys"] for s in grpc["items"] if s["name"] == "tools"] == [sorted(values)]
    shown += [str(rest), str(grpc), httpx.get(
        f"{stack.api_url}/v1/secrets", headers={"Authorization": f"Bearer {stack.token}"}
    ).text]  # fmt: skip
    for text in shown:
        for value in values.values():
            assert not leaks(text, value), text

    # A put replaces the keys (a new version); gRPC carries it as well as REST.
    again = grpc_client(stack).put_secret("tools", {"only": "replaced-value"}).to_json()
    assert (again["keys"], again["version"]) == (["only"], 2)
    assert "replaced-value" not in str(again)
    gone = stack.aegis("secret", "delete", "tools")
    assert gone.returncode == 0 and "deleted secret tools" in gone.stdout
    missing = stack.aegis("secret", "get", "tools")
    assert missing.returncode == 4 and "no secret 'tools'" in missing.stderr


def test_put_refusals_name_the_key_and_never_echo_a_value(stack: Stack) -> None:
    r = httpx.put(
        f"{stack.api_url}/v1/secrets/x",
        json={"data": {"bad key": "hush-hush-1", "ok": ""}},
        headers={"Authorization": f"Bearer {stack.token}"},
    )
    assert r.status_code == 400 and "bad key" in r.text and "'ok' is empty" in r.text
    assert "hush-hush-1" not in r.text
    bad = stack.aegis("secret", "put", "x", "no-equals-sign-secret")
    assert bad.returncode == 2 and "argument 1: not KEY=VALUE" in bad.stderr
    assert "no-equals-sign-secret" not in bad.stderr
    name = stack.aegis("secret", "put", "bad/name", "k=v")
    assert name.returncode == 2 and "secret name 'bad/name'" in name.stderr


# ---------------------------------------------------------------- launch and redaction


def test_the_secret_reaches_the_container_as_env_and_as_a_read_only_tmpfs_file(
    stack: Stack, probed: dict[str, Any]
) -> None:
    assert probed["state"] == "SUCCEEDED", probed
    lines = lines_of(stack, probed["id"])
    digest = hashlib.sha256(VALUE.encode()).hexdigest()
    assert f"env-sha={digest}" in lines and f"file-sha={digest}" in lines, lines
    assert "file=400 65534" in lines  # mode 0400, owned by the container's user
    assert "mount=tmpfs ro" in lines and "writable=no" in lines
    assert "plain=plain-text" in lines


def test_a_printed_secret_is_redacted_in_stored_and_streamed_logs(
    stack: Stack, probed: dict[str, Any]
) -> None:
    stored = lines_of(stack, probed["id"])
    streamed = [
        item.line for item in stack.client().watch(probed["id"]) if hasattr(item, "line")
    ]
    cli = stack.aegis("logs", probed["id"], check=True).stdout
    for lines in (stored, streamed, cli.splitlines()):
        assert f"printed {KEY_MARK}" in lines, lines
        assert f"b64 {KEY_MARK}" in lines, lines
        assert not leaks("\n".join(lines))


def test_a_value_split_across_two_engine_frames_is_joined_then_redacted(
    stack: Stack, openai: None
) -> None:
    # The engine cuts lines into 16 KiB frames: the value starts 4 bytes before the cut.
    script = 'head -c 16380 /dev/zero | tr "\\0" 0; printf %s "$OPENAI_API_KEY"; echo " end"'
    rec = run(stack, with_secrets("split-frames", script))
    assert rec["state"] == "SUCCEEDED", rec
    assert lines_of(stack, rec["id"]) == ["0" * 16380 + KEY_MARK + " end"]


def test_after_the_run_the_value_is_nowhere_but_openbao(
    stack: Stack, ray_driver: None, probed: dict[str, Any]
) -> None:
    eid = probed["id"]
    places: dict[str, str] = {
        "pg_dump": _pg_dump(stack),
        "temporal workflow show": _temporal(stack, "workflow", "show", "--workflow-id",
                                            workflow_id(eid)),
        "temporal.db": (stack.home / "temporal" / "temporal.db").read_bytes().decode("latin-1"),
        "ray list actors": _ray(stack, "actors"),
        "ray list tasks": _ray(stack, "tasks"),
        "aegis get -o yaml": stack.aegis("get", eid, "-o", "yaml", check=True).stdout,
        "REST execution": httpx.get(f"{stack.api_url}/v1/executions/{eid}",
                                    headers={"Authorization": f"Bearer {stack.token}"}).text,
    }  # fmt: skip
    assert eid in places["pg_dump"] and "openai#api_key" in places["pg_dump"]
    assert "run_attempt" in places["temporal workflow show"]
    assert "aegis-node-agent" in places["ray list actors"]
    assert "NodeAgentActor.start" in places["ray list tasks"]
    session = Path(ray._private.worker.global_worker.node.get_session_dir_path())
    files = [*(stack.home / "logs").rglob("*"), *(session / "logs").rglob("*")]
    files = [f for f in files if f.is_file()]
    assert len(files) > 10
    for f in files:
        places[str(f)] = f.read_bytes().decode("latin-1")
    for value in (VALUE, ORG):
        found = {where: leaks(text, value) for where, text in places.items()}
        assert not {k: v for k, v in found.items() if v}, value


# ---------------------------------------------------------------- tenants


def test_another_tenant_can_neither_see_nor_touch_nor_reference_a_secret(
    stack: Stack, openai: None
) -> None:
    token = token_of(stack, "tenant-b")
    other = Client.rest(stack.api_url, token)
    assert "openai" not in [s.name for s in other.secrets().items]
    for call in (other.secret, other.delete_secret, grpc_client(stack, token).secret):
        with pytest.raises(ApiError) as err:
            call("openai")
        assert err.value.status == 404 and err.value.error == "not_found"
    assert stack.client().secret("openai").keys == ["api_key", "org"]  # untouched
    # The same name is another secret in another tenant.
    assert other.put_secret("openai", {"mine": "tenant-b-value"}).keys == ["mine"]
    assert stack.client().secret("openai").keys == ["api_key", "org"]
    with pytest.raises(ApiError) as refused:
        other.submit(with_secrets("b-borrows", "echo $OPENAI_API_KEY"), source="b.yaml")
    body = refused.value.body
    assert refused.value.status == 422 and body["error"] == "secret_not_found", body
    assert {(p["path"], p["value"]) for p in body["problems"]} == {
        ("spec.env.OPENAI_API_KEY", "openai#api_key"),
        ("spec.secret_files[0].secret", "openai#api_key"),
    }
    assert other.list().items == []  # nothing was written
    # A tenant id shaped like a path: the API issues no token for it (issue 12 bounds tenant
    # ids), and one stored before reaches no other tenant's secrets either.
    r = httpx.post(
        f"{stack.api_url}/v1/tokens",
        json={"role": "user", "tenant_id": "../default"},
        headers={"Authorization": f"Bearer {stack.token}"},
    )
    assert r.status_code == 422 and r.json()["problems"][0]["path"] == "body.tenant_id", r.text
    sneaky = Client.rest(stack.api_url, stored_token(stack, "../default"))
    assert sneaky.secrets().items == []
    other.delete_secret("openai")


def test_a_missing_secret_or_key_is_refused_at_submit_naming_field_and_reference(
    stack: Stack, openai: None, tmp_path: Path
) -> None:
    refs = """\
  env: {A: {secret: "openai#nope"}}
  secret_files: [{secret: "missing#x", path: /run/secrets/x}]
"""
    path = tmp_path / "missing.yaml"
    path.write_text(with_secrets("missing-refs", "true", refs))
    before = len(stack.client().list(limit=500).items)
    done = stack.aegis("submit", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    text = " ".join(done.stderr.split())
    assert "spec.env.A: secret 'openai' has no key 'nope' (openai#nope)" in text
    assert "spec.secret_files[0].secret: this tenant has no secret 'missing' (missing#x)" in text
    assert len(stack.client().list(limit=500).items) == before


# ---------------------------------------------------------------- faults


def test_openbao_stopped_then_sealed_gives_503_and_recovers(
    stack: Stack, openai: None, bao: EmbeddedOpenBao
) -> None:
    c = stack.client()
    uses_secret = with_secrets("needs-bao", 'test -n "$OPENAI_API_KEY" && echo got-it')
    before = len(c.list(limit=500).items)
    bao.stop()
    try:
        listed = stack.aegis("secret", "list")
        assert listed.returncode == 3 and "OpenBao not reachable" in listed.stderr
        with pytest.raises(ApiError) as err:
            c.submit(uses_secret, source="needs-bao.yaml")
        assert err.value.status == 503 and err.value.error == "secrets_unavailable"
        assert len(c.list(limit=500).items) == before  # nothing written
        assert _health(stack)["secrets"].startswith("unavailable")
        # Executions without secrets do not need OpenBao.
        assert run(stack, agent_yaml("no-secrets", "echo fine"))["state"] == "SUCCEEDED"
    finally:
        bao.start()
    assert stack.aegis("secret", "list").returncode == 0
    done = run(stack, uses_secret)
    assert done["state"] == "SUCCEEDED" and lines_of(stack, done["id"]) == ["got-it"]

    bao.seal()
    try:
        with pytest.raises(ApiError) as err:
            c.put_secret("openai", {"api_key": VALUE, "org": ORG})
        assert err.value.status == 503 and err.value.body["sealed"] is True
        assert "sealed" in str(err.value)
        listed = stack.aegis("--api", "grpc", "secret", "list")
        assert listed.returncode == 3 and "is sealed" in listed.stderr
        assert _health(stack)["secrets"].startswith("sealed")
    finally:
        bao.start()  # unseals with the key `aegis up` kept
    assert [s.name for s in c.secrets().items] == ["openai"]


def test_a_secret_deleted_after_submit_fails_the_attempt_before_any_container(
    stack: Stack, openai: None
) -> None:
    c = stack.client()
    c.put_secret("short-lived", {"k": f"gone-{secrets.token_hex(6)}"})
    # The node has 2 CPUs: while the blocker runs, the second waits for capacity.
    blocker = c.submit(agent_yaml("blocker", "sleep 300", cpu=1500, timeout="600s")).id
    wait_state(c, blocker, {"RUNNING"})
    since = time.time()
    refs = '  env: {K: {secret: "short-lived#k"}}\n'
    eid = c.submit(with_secrets("late-delete", "echo $K", refs, cpu=1500)).id
    assert wait_state(c, eid, {"PENDING"})["state"] == "PENDING"
    c.delete_secret("short-lived")
    c.cancel(blocker)
    final = wait_state(c, eid, {"SUCCEEDED", "FAILED"}, timeout=120)
    assert final["state"] == "FAILED", final
    assert final["reason"] == "secret_not_found: spec.env.K: secret 'short-lived' no longer exists"
    states = [e.to_state for e in c.events(eid).items]
    assert "STARTING" not in states and "RUNNING" not in states, states
    created = docker.from_env().events(
        since=int(since), until=int(time.time()) + 1, decode=True,
        filters={"type": "container", "event": "create", "label": f"{EXECUTION_LABEL}={eid}"},
    )  # fmt: skip
    assert list(created) == []


def test_a_restarted_node_agent_keeps_redacting_the_container_it_takes_over(
    stack: Stack, ray_driver: None, openai: None
) -> None:
    refs = SECRET_REFS + '    - {secret: "openai#org", path: /run/secrets/org}\n'
    script = (
        'for i in $(seq 1 60); do echo "tick-$i $OPENAI_API_KEY $(cat /run/secrets/org)"; '
        "sleep 0.1; done"
    )
    c = stack.client()
    eid = c.submit(with_secrets("outlives-agent-secret", script, refs, timeout="120s")).id
    wait_state(c, eid, {"RUNNING"})
    wait_until(lambda: len(lines_of(stack, eid)) >= 5, 30, "some lines are stored")
    agent = _node_agent(stack)
    pid = ray.get(agent.ping.remote(), timeout=30)["pid"]
    os.kill(pid, signal.SIGKILL)
    final = wait_state(c, eid, {"SUCCEEDED", "FAILED"}, timeout=180)
    assert final["state"] == "SUCCEEDED", final
    assert ray.get(agent.ping.remote(), timeout=60)["pid"] != pid  # it did restart
    assert lines_of(stack, eid) == [f"tick-{i} {KEY_MARK} {ORG_MARK}" for i in range(1, 61)]


# ---------------------------------------------------------------- where to look


def _health(stack: Stack) -> dict[str, Any]:
    """/health's body (answered with 503 while a dependency is down)."""
    body: dict[str, Any] = httpx.get(f"{stack.api_url}/health", timeout=30).json()
    return body


def _pg_dump(stack: Stack) -> str:
    # Under root the embedded server's files are in its own user's directory (embedded.py).
    password = EmbeddedPostgres(stack.home / "postgres").password_path.read_text().strip()
    done = subprocess.run(
        [str(bin_dir() / "pg_dump"), "-h", "127.0.0.1", "-p", stack.env["AEGIS_POSTGRES_PORT"],
         "-U", "postgres", "-d", "aegis", "--inserts"],
        env=os.environ | {"PGPASSWORD": password}, capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    return done.stdout


def _temporal(stack: Stack, *args: str) -> str:
    done = subprocess.run(
        [temporal_cli(), *args, "--address", f"127.0.0.1:{stack.env['AEGIS_TEMPORAL_PORT']}",
         "--disable-config-env", "--disable-config-file", "--output", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def _ray(stack: Stack, what: str) -> str:
    state = UpState.load(stack.home / "up.json")
    assert state is not None
    env = os.environ | state.auth.env()
    done = subprocess.run(
        [ray_cli(), "list", what, "--detail", "--limit", "10000",
         "--address", state.dashboard_url],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout
