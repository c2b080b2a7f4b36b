"""`aegis up` stopped while the Ray head starts (issue 11, item 8): what it had started is
recorded before it is started, so `aegis down` stops it and leaves no process behind for that
AEGIS_HOME (Ray's processes, PostgreSQL, Temporal, OpenBao)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import AEGIS, REPO, _stack_env, remove_home

pytestmark = pytest.mark.e2e
# Ports of this module only (see conftest): 29xxx.
PORTS = {
    "AEGIS_API_PORT": "29080",
    "AEGIS_GRPC_PORT": "29051",
    "AEGIS_RAY_PORT": "29379",
    "AEGIS_RAY_DASHBOARD_PORT": "29265",
    "AEGIS_POSTGRES_PORT": "29432",
    "AEGIS_TEMPORAL_PORT": "29233",
    "AEGIS_TEMPORAL_UI_PORT": "29234",
    "AEGIS_OPENBAO_PORT": "29200",  # and 29201
}


def processes_of(home: Path) -> list[psutil.Process]:
    """Every process whose environment names this AEGIS_HOME (Ray, PostgreSQL, Temporal,
    OpenBao)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("AEGIS_HOME") == str(home):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def ray_processes_of(home: Path) -> list[str]:
    names = []
    for p in processes_of(home):
        try:
            line = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "ray" in line and ("gcs_server" in line or "raylet" in line or "ray start" in line):
            names.append(line[:120])
    return names


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_up_stopped_at_the_ray_head_step_leaves_nothing_down_does_not_stop(sig: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="aegis-interrupted-"))
    env = _stack_env(home) | PORTS
    up = subprocess.Popen(
        [*AEGIS, "up"], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        seen = []
        deadline = time.monotonic() + 240
        for line in up.stdout:  # ends when `up` exits
            seen.append(line)
            if "Ray head" in line:
                break
            assert time.monotonic() < deadline, seen
        else:
            pytest.fail(f"aegis up never reached the Ray head step: {''.join(seen)}")
        # `ray start` is under way: wait until its GCS exists, then stop `aegis up` there.
        while not ray_processes_of(home):
            assert time.monotonic() < deadline and up.poll() is None, "no Ray process started"
            time.sleep(0.1)
        os.kill(up.pid, sig)
        up.wait(timeout=60)
        assert ray_processes_of(home), "the Ray head went with `aegis up`: nothing to test"
        down = subprocess.run(
            [*AEGIS, "down"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
        )
        assert down.returncode == 0, down.stdout + down.stderr
        assert "Ray head" in down.stdout, down.stdout
        deadline = time.monotonic() + 60
        while left := processes_of(home):
            assert time.monotonic() < deadline, [" ".join(p.cmdline())[:120] for p in left]
            time.sleep(0.5)
    finally:
        if up.poll() is None:
            up.kill()
        for p in processes_of(home):  # a failed test must not leave them running either
            p.kill()
        remove_home(home)
