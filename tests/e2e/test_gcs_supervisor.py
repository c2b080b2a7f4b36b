"""The GCS supervisor as a real process, against stand-ins named as Ray's `gcs_server` and
`raylet` are (so it finds them the way it finds Ray's): it restarts a killed GCS with the same
arguments and environment, and never fights a deliberate stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from aegis_ray.adapters.process import pid_alive, spawn_detached, stop_pid
from aegis_ray.adapters.ray.gcs_supervisor import Record
from aegis_ray.adapters.ray.head import stop_session
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.e2e

PORT = 29871  # never listened on by the stand-in: "free" for the supervisor's check
SLEEPER = (
    "import os, time; open(os.environ['MARK'], 'a').write(f'{os.getpid()}\\n'); time.sleep(300)"
)


@dataclass
class FakeHead:
    folder: Path
    raylet: subprocess.Popen[bytes]
    gcs: subprocess.Popen[bytes]
    supervisor: int = 0

    @property
    def record(self) -> Record | None:
        return Record.load(self.folder / "record.json")

    def starts(self) -> list[int]:
        """Every stand-in GCS process that ever ran, by the file each wrote when it started."""
        return [int(x) for x in (self.folder / "gcs-starts").read_text().split()]


def _named(folder: Path, name: str) -> str:
    link = folder / name
    link.symlink_to(sys.executable)
    return str(link)


@pytest.fixture
def head(tmp_path: Path) -> Iterator[FakeHead]:
    env = os.environ | {"MARK": str(tmp_path / "gcs-starts")}
    raylet = subprocess.Popen(
        [_named(tmp_path, "raylet"), "-c", "import time; time.sleep(300)"], start_new_session=True
    )
    gcs = subprocess.Popen(
        [_named(tmp_path, "gcs_server"), "-c", SLEEPER, f"--gcs_server_port={PORT}"],
        env=env,
        start_new_session=True,
    )
    fake = FakeHead(tmp_path, raylet, gcs)
    wait_until(lambda: (tmp_path / "gcs-starts").exists(), 10, "the stand-in GCS started")
    try:
        yield fake
    finally:
        stop_pid(tmp_path / "supervisor.pid", timeout=5)
        for proc in (raylet, gcs):
            proc.kill()
            proc.wait()
        if fake.supervisor:
            stop_session(fake.supervisor, grace_s=1)  # a GCS it restarted


def _supervise(head: FakeHead) -> int:
    cmd = [
        sys.executable, "-m", "aegis_ray.adapters.ray.gcs_supervisor",
        "--gcs-port", str(PORT), "--ray-session", str(head.raylet.pid),
        "--record", str(head.folder / "record.json"),
    ]  # fmt: skip
    head.supervisor = spawn_detached(
        cmd, log_path=head.folder / "supervisor.log", pid_path=head.folder / "supervisor.pid"
    )
    wait_until(lambda: head.record is not None, 30, "the supervisor found the GCS")
    return head.supervisor


def test_a_killed_gcs_is_restarted_with_its_arguments_and_environment(head: FakeHead) -> None:
    _supervise(head)
    assert head.record is not None and head.record.gcs_pid == head.gcs.pid
    first = psutil.Process(head.gcs.pid).cmdline()
    for round_ in (1, 2):
        old = head.record.gcs_pid if head.record else 0
        os.kill(old, signal.SIGKILL)
        starts = round_ + 1
        wait_until(lambda n=starts: len(head.starts()) == n, 15, f"restart {round_}")
        record = head.record
        assert record is not None and len(record.restarts) == round_
        assert record.gcs_pid == head.starts()[-1] != old
        # The same command line; the environment came along (the new process found MARK).
        assert psutil.Process(record.gcs_pid).cmdline() == first
        assert 0 <= record.restarts[-1].down_s < 5


def test_a_stopped_head_is_not_restarted_and_the_supervisor_exits(head: FakeHead) -> None:
    pid = _supervise(head)
    head.raylet.kill()  # `ray stop`: the raylet goes too
    head.gcs.kill()
    wait_until(lambda: not pid_alive(pid), 15, "the supervisor exited")
    assert head.starts() == [head.gcs.pid]
    assert "the head was stopped" in (head.folder / "supervisor.log").read_text()


def test_no_second_gcs_while_another_process_holds_the_port(head: FakeHead) -> None:
    _supervise(head)
    with socket.create_server(("127.0.0.1", PORT)):
        head.gcs.kill()
        wait_until(
            lambda: "not starting a second GCS" in (head.folder / "supervisor.log").read_text(),
            15,
            "the supervisor saw the port taken",
        )
        assert head.starts() == [head.gcs.pid]
    wait_until(lambda: len(head.starts()) == 2, 30, "restarted once the port was free")


def test_sigterm_stops_the_supervisor_and_it_restarts_nothing(head: FakeHead) -> None:
    pid = _supervise(head)
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not pid_alive(pid), 10, "the supervisor stopped")
    head.gcs.kill()
    head.gcs.wait()
    assert head.starts() == [head.gcs.pid]
    assert pid_alive(head.raylet.pid)
