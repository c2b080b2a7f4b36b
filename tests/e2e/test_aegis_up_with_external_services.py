"""`aegis up --config` with a NodeConfig naming an external PostgreSQL (spec.database), an
external Temporal (spec.temporal) and an external OpenBao (spec.secrets, AppRole): nothing
embedded is started, and an execution's row, workflow and secrets land in those services.

The "external" services are a second embedded PostgreSQL, a second Temporal dev server and a
second OpenBao, started by the test on ports of their own (29xxx). Runs before the session's
main stack (files run in name order), so only one Ray cluster is up at a time on this small
machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import hvac
import pytest

from aegis_ray.adapters.openbao.server import EmbeddedOpenBao
from aegis_ray.adapters.postgres.embedded import EmbeddedPostgres
from aegis_ray.adapters.process import port_in_use
from aegis_ray.adapters.temporal.dev_server import TemporalDevServer, temporal_cli
from aegis_ray.node.stack import UpState
from tests.e2e.conftest import REPO, Stack

pytestmark = pytest.mark.e2e
EXTERNAL_PG_PORT, EXTERNAL_TEMPORAL_PORT, EXTERNAL_TEMPORAL_UI_PORT = 29432, 29233, 29234
EXTERNAL_OPENBAO_PORT = 29210  # and 29211
NAMESPACE, TASK_QUEUE = "aegis-ext", "aegis-ext-queue"
# Where the embedded services would listen: nothing may answer there.
EMBEDDED_PORTS = {
    "AEGIS_POSTGRES_PORT": "29433",
    "AEGIS_TEMPORAL_PORT": "29235",
    "AEGIS_TEMPORAL_UI_PORT": "29236",
    "AEGIS_OPENBAO_PORT": "29200",  # and 29201
}
PORTS = EMBEDDED_PORTS | {
    "AEGIS_API_PORT": "29080",
    "AEGIS_GRPC_PORT": "29051",
    "AEGIS_RAY_PORT": "29379",
    "AEGIS_RAY_DASHBOARD_PORT": "29265",
}


@dataclass
class External:
    stack: Stack
    postgres: EmbeddedPostgres
    temporal: TemporalDevServer
    openbao: EmbeddedOpenBao
    config: Path


NODE_CONFIG = f"""\
apiVersion: 100monkeys.ai/v1
kind: NodeConfig
metadata:
  name: hybrid-external
spec:
  node:
    id: hybrid-external
    type: hybrid
    tags: [local]
    resources: {{cpu_cores: 2, memory_gb: 2, disk_gb: 1}}
  database:
    url: postgresql://postgres@127.0.0.1:{EXTERNAL_PG_PORT}/aegis_ext
  temporal:
    address: 127.0.0.1:{EXTERNAL_TEMPORAL_PORT}
    namespace: {NAMESPACE}
    task_queue: {TASK_QUEUE}
  secrets:
    address: http://127.0.0.1:{EXTERNAL_OPENBAO_PORT}
"""


@pytest.fixture(scope="module")
def external() -> Iterator[External]:
    root = Path(tempfile.mkdtemp(prefix="aegis-external-"))
    postgres = EmbeddedPostgres(root / "ext-pg", port=EXTERNAL_PG_PORT, database="aegis_ext")
    temporal = TemporalDevServer(
        root / "ext-temporal",
        port=EXTERNAL_TEMPORAL_PORT,
        ui_port=EXTERNAL_TEMPORAL_UI_PORT,
        namespace=NAMESPACE,
    )
    openbao = EmbeddedOpenBao(root / "ext-openbao", port=EXTERNAL_OPENBAO_PORT)
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AEGIS_", "RAY_"))}
    env |= PORTS | {
        "AEGIS_HOME": str(home),
        "AEGIS_RAY_ATTACH": "false",
        # The password travels in a private file, never in the NodeConfig or on a command line.
        "AEGIS_DATABASE_PASSWORD_FILE": str(postgres.password_path),
        "COLUMNS": "200",
    }
    api_url = f"http://127.0.0.1:{PORTS['AEGIS_API_PORT']}"
    stack = Stack(home=home, env=env, api_url=api_url, token="")
    config = root / "node.yaml"
    try:
        postgres.start()
        temporal.start()
        access = openbao.start()
        # The AppRole's secret id stays in its 0600 file: the NodeConfig names the file only.
        approle = f"role_id: {access.role_id}, secret_id_file: {access.secret_id_file}"
        config.write_text(NODE_CONFIG + f"    approle: {{{approle}}}\n")
        yield External(stack, postgres, temporal, openbao, config)
    finally:
        stack.aegis("down", timeout=300)
        openbao.stop()
        temporal.stop()
        postgres.stop()
        postgres.remove()
        shutil.rmtree(root, ignore_errors=True)


def test_aegis_up_uses_the_external_services_of_its_node_config(external: External) -> None:
    stack = external.stack
    up = stack.aegis("up", "--config", str(external.config), timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    state = UpState.load(stack.home / "up.json")
    # The Ray head with what keeps its state: an embedded Redis, as the config names no other.
    assert state is not None
    assert state.started == {"ray": True, "redis": True, "gcs_supervisor": True}
    assert state.temporal_address == external.temporal.address
    assert state.database_url == external.postgres.dsn  # its password read from the 0600 file
    # Nothing embedded: no data folders, nothing on the embedded services' ports.
    assert not (stack.home / "postgres").exists() and not (stack.home / "temporal").exists()
    assert not [p for p in EMBEDDED_PORTS.values() if port_in_use("127.0.0.1", int(p))]
    stack.token = (stack.home / "admin.token").read_text().strip()

    client = stack.client()
    eid = client.submit((REPO / "examples" / "hello-agent.yaml").read_text(), source="hello").id
    deadline = time.monotonic() + 120
    while (rec := client.get(eid).to_json())["state"] not in ("SUCCEEDED", "FAILED"):
        assert time.monotonic() < deadline, rec
        time.sleep(0.5)
    assert rec["state"] == "SUCCEEDED", rec

    row = asyncio.run(_execution_row(external.postgres.dsn, eid))
    assert row is not None and row["state"] == "SUCCEEDED"
    workflows = _workflows(external.temporal.address)
    assert [w["taskQueue"] for w in workflows if eid in w["execution"]["workflowId"]] == [
        TASK_QUEUE
    ]

    down = stack.aegis("down", timeout=300)
    assert down.returncode == 0, down.stderr
    # The Ray head, and what keeps its state (the embedded Redis and the GCS supervisor).
    assert _stopped(down.stdout) == ["gcs supervisor", "ray", "redis"]
    assert external.postgres.is_running() and external.temporal.is_running()


def test_secrets_go_to_the_external_openbao_through_the_approle(external: External) -> None:
    stack = external.stack
    up = stack.aegis("up", "--config", str(external.config), timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    state = UpState.load(stack.home / "up.json")
    assert state is not None and "openbao" not in state.started
    assert state.openbao["address"] == external.openbao.address
    assert not (stack.home / "openbao").exists()
    stack.token = (stack.home / "admin.token").read_text().strip()
    put = stack.aegis("secret", "put", "ext", "token=external-value-1234", check=True)
    assert "secret ext version 1: token" in put.stdout
    root = hvac.Client(url=external.openbao.address, token=external.openbao._root())
    kv = root.secrets.kv.v2
    stored = kv.read_secret_version(
        "aegis/tenants/default/ext", mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == {"token": "external-value-1234"}

    client = stack.client()
    manifest = (REPO / "examples" / "hello-agent.yaml").read_text().replace(
        "    GREETING: hello\n", '    GREETING: {secret: "ext#token"}\n'
    )
    eid = client.submit(manifest, source="hello-secret").id
    deadline = time.monotonic() + 120
    while (rec := client.get(eid)).state not in ("SUCCEEDED", "FAILED"):
        assert time.monotonic() < deadline, rec
        time.sleep(0.5)
    assert rec.state == "SUCCEEDED", rec
    # The hello agent greets with $GREETING: the value reached it, and was redacted.
    lines = [ln.line for ln in client.logs(eid)]
    assert any("[REDACTED:ext#token]" in ln for ln in lines), lines
    assert not any("external-value-1234" in ln for ln in lines)

    down = stack.aegis("down", timeout=300)
    # The Ray head, and what keeps its state (the embedded Redis and the GCS supervisor).
    assert _stopped(down.stdout) == ["gcs supervisor", "ray", "redis"]
    assert external.openbao.is_running()


async def _execution_row(dsn: str, eid: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow("SELECT state FROM executions WHERE id = $1::uuid", eid)
    finally:
        await conn.close()


def _workflows(address: str) -> list[dict]:
    done = subprocess.run(
        [
            temporal_cli(), "workflow", "list", "--namespace", NAMESPACE, "--address", address,
            "--disable-config-env", "--disable-config-file", "--output", "json",
        ],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    items: list[dict] = json.loads(done.stdout or "[]")
    return items


def _stopped(cli_output: str) -> list[str]:
    return [s.strip() for s in cli_output.split("stopped:")[1].split(",")]
