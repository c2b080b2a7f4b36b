"""One real aegis stack per test session: `aegis up` in a temporary AEGIS_HOME on ports of its own.

Every end-to-end test talks to it through the real CLI, the real REST API, or as a Ray driver.
`aegis down` at the end stops everything it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aegis_ray import Client
from aegis_ray.adapters.postgres.embedded import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[2]
AEGIS = [sys.executable, "-m", "aegis_ray.cli"]
LOG_QUOTA = 1 << 20  # the session stack's AEGIS_LOG_MAX_BYTES


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    api_url: str
    token: str
    # Modes of the directories above `home` before `aegis up` (which must leave them alone).
    parent_modes: dict[Path, int] = field(default_factory=dict)

    def aegis(
        self,
        *args: str,
        timeout: float = 180,
        check: bool = False,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `aegis` CLI against this stack (`input`: its standard input; `env`:
        variables added to the stack's, e.g. a secret that must not be an argument)."""
        done = subprocess.run(
            [*AEGIS, *args],
            env=self.env | (env or {}),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"aegis {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def client(self) -> Client:
        return Client.rest(self.api_url, self.token)


def remove_home(home: Path) -> None:
    """Delete a test's AEGIS_HOME, with its embedded PostgreSQL's files, which under root live
    outside it (/var/lib/aegis-postgres/<key>); a server still running there is stopped first
    (an interrupted `aegis up` may leave one: its command line does not name the home)."""
    pg = EmbeddedPostgres(home / "postgres")
    with contextlib.suppress(RuntimeError, OSError):
        pg.stop()
    pg.remove()
    shutil.rmtree(home, ignore_errors=True)


def _stack_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AEGIS_", "RAY_"))}
    env.update(
        AEGIS_HOME=str(home),
        # Every test port is in 20000-32767: outside Ray's worker port range (10002-19999),
        # Linux's ephemeral range (32768-60999, where any outgoing connection may hold a port)
        # and the defaults a developer may run. Other modules: 22xxx-24xxx multinode, 30xxx
        # attach, 31xxx aws start commands.
        AEGIS_API_PORT="28080",
        AEGIS_GRPC_PORT="28051",
        AEGIS_RAY_PORT="26379",
        AEGIS_RAY_DASHBOARD_PORT="28265",
        AEGIS_POSTGRES_PORT="25432",
        AEGIS_TEMPORAL_PORT="27233",
        AEGIS_TEMPORAL_UI_PORT="28233",
        AEGIS_OPENBAO_PORT="28200",  # and 28201
        AEGIS_RAY_ATTACH="false",
        AEGIS_ORPHAN_GRACE_S="5",
        # Small enough for a test to reach (test_node_agent_executions.py), not for the others.
        AEGIS_LOG_MAX_BYTES=str(LOG_QUOTA),
        COLUMNS="200",
    )
    return env


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # AEGIS_HOME does not exist yet, below a directory others may traverse (as a home may be).
    parent = Path(tempfile.mkdtemp(prefix="aegis-test-"))
    parent.chmod(0o711)
    home = parent / "home"
    env = _stack_env(home)
    modes = {p: p.stat().st_mode for p in (parent, *parent.parents)}
    s = Stack(home=home, env=env, api_url="http://127.0.0.1:28080", token="", parent_modes=modes)
    up = s.aegis("up", timeout=600)
    try:
        assert up.returncode == 0, f"aegis up failed:\n{up.stdout}\n{up.stderr}"
        s.token = (home / "admin.token").read_text().strip()
        yield s
    finally:
        down = s.aegis("down", timeout=300)
        print(down.stdout, down.stderr)
        remove_home(home)
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_driver(stack: Stack) -> Iterator[None]:
    """This test process as a Ray driver of the stack's cluster (same auth as `aegis up` chose)."""
    import ray

    from aegis_ray.adapters.ray import head as ray_head
    from aegis_ray.node.stack import UpState

    state = UpState.load(stack.home / "up.json")
    assert state is not None
    ray_head.connect(state.ray_address, state.auth)
    yield
    ray.shutdown()
