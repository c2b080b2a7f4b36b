"""The embedded services as real daemons: PostgreSQL, the Temporal dev server, process helpers.

Every service runs on an OS-chosen free port, so a developer's running stack is left alone.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from aegis_ray.adapters.postgres.embedded import EmbeddedPostgres
from aegis_ray.adapters.process import read_pid, spawn_detached, stop_pid, wait_for_port
from aegis_ray.adapters.temporal.dev_server import TemporalDevServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line contains `text`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if text in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


@pytest.fixture
def listener() -> Iterator[int]:
    """A port held by a plain socket, standing in for some other program."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# -- process helpers ------------------------------------------------------------------------


def test_detached_process_is_tracked_by_pidfile_and_stopped(tmp_path: Path) -> None:
    pid_path = tmp_path / "sleep.pid"
    pid = spawn_detached(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        log_path=tmp_path / "sleep.log",
        pid_path=pid_path,
    )
    assert read_pid(pid_path) == pid
    assert os.getsid(pid) == pid, "daemon must lead its own session"
    assert stop_pid(pid_path, timeout=5) is True
    assert read_pid(pid_path) is None
    assert not pid_path.exists()
    assert stop_pid(pid_path) is False


def test_wait_for_port_timeout_names_service_and_shows_log(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("fatal: could not bind\n")
    with pytest.raises(TimeoutError, match=r"(?s)demo service not listening.*could not bind"):
        wait_for_port("127.0.0.1", free_port(), timeout=0.5, what="demo service", log_path=log)


# -- PostgreSQL -----------------------------------------------------------------------------


async def _select_one(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        value: int = await conn.fetchval("SELECT 1")
        return value
    finally:
        await conn.close()


def test_embedded_postgres_starts_idempotently_serves_sql_and_stops(tmp_path: Path) -> None:
    port = free_port()
    pg = EmbeddedPostgres(tmp_path / "pg", port=port, database="aegis_test")
    try:
        dsn = pg.start()
        password = pg.password_path.read_text().strip()
        assert dsn == f"postgresql://postgres:{password}@127.0.0.1:{port}/aegis_test"
        assert pg.password_path.stat().st_mode & 0o077 == 0  # private to its owner
        assert asyncio.run(_select_one(dsn)) == 1
        # No trust for local users: without the password the server refuses.
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(_select_one(f"postgresql://postgres:wrong@127.0.0.1:{port}/aegis_test"))
        pid = pg.postmaster_pid()
        assert pid is not None

        assert pg.start() == dsn
        assert pg.postmaster_pid() == pid, "second start() must reuse the running server"
    finally:
        pg.stop()
    assert not pg.is_running()
    assert processes_mentioning(str(pg.pgdata)) == []
    pg.stop()  # stopping a stopped server is a no-op
    pg.remove()
    assert not pg.server_dir.exists() and not pg.data_dir.exists()


def test_embedded_postgres_refuses_a_port_taken_by_another_program(
    tmp_path: Path, listener: int
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", port=listener)
    with pytest.raises(RuntimeError, match=rf"port 127.0.0.1:{listener} is already in use"):
        pg.start()
    assert not pg.is_running()


def test_embedded_postgres_rejects_bad_database_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"database: 'x; drop'"):
        EmbeddedPostgres(tmp_path, database="x; drop")


# -- Temporal -------------------------------------------------------------------------------


# A temporalio Client in a child process that skips interpreter teardown: the SDK's Rust threads
# can abort a process at exit (temporalio/sdk-python#300), which must not fail this test run.
DESCRIBE_DEFAULT = """
import asyncio, os, sys
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

async def main():
    client = await Client.connect(sys.argv[1])
    req = DescribeNamespaceRequest(namespace="default")
    resp = await client.workflow_service.describe_namespace(req)
    print(resp.namespace_info.name, flush=True)

asyncio.run(main())
os._exit(0)
"""


def describe_default_namespace(address: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", DESCRIBE_DEFAULT, address],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_temporal_dev_server_starts_idempotently_accepts_clients_and_stops(
    tmp_path: Path,
) -> None:
    port, ui_port = free_port(), free_port()
    server = TemporalDevServer(tmp_path / "temporal", port=port, ui_port=ui_port)
    try:
        assert server.start() == f"127.0.0.1:{port}"
        pid = server.pid()
        assert pid is not None
        assert describe_default_namespace(server.address) == "default"
        assert httpx.get(server.ui_url, timeout=10).status_code == 200

        server.start()
        assert server.pid() == pid, "second start() must reuse the running server"
    finally:
        server.stop()
    assert not server.is_running()
    assert processes_mentioning(str(server.db_path)) == []
    assert server.db_path.exists(), "state is kept on disk between runs"


def test_temporal_refuses_a_port_taken_by_another_program(tmp_path: Path, listener: int) -> None:
    server = TemporalDevServer(tmp_path / "temporal", port=listener, ui_port=free_port())
    with pytest.raises(RuntimeError, match=rf"port 127.0.0.1:{listener} is already in use"):
        server.start()
    assert not server.is_running()


# -- Docker ---------------------------------------------------------------------------------


def docker_status(timeout: float = 3.0) -> tuple[bool, str]:
    """Ping the engine; (True, version info) or (False, what is wrong and how to fix it)."""
    import docker

    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    client = None
    try:
        client = docker.DockerClient(base_url=host, timeout=int(max(1, timeout)))
        client.ping()
        version = client.version()
        return True, f"Docker {version.get('Version', '?')} at {host}"
    except Exception as err:  # the SDK raises many kinds: all mean "not reachable"
        return False, (
            f"Docker engine not reachable at {host}: {err}; "
            "start it with `dockerd` or `systemctl start docker`"
        )
    finally:
        if client is not None:
            client.close()


def test_docker_engine_is_reachable() -> None:
    ok, message = docker_status()
    assert ok, message
    assert message.startswith("Docker ")
