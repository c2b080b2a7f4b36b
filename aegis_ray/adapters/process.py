"""Helpers for daemons that outlive the CLI process that starts them (`aegis up` / `aegis down`).

A daemon runs in its own session (so Ctrl-C on the CLI does not reach it) and is tracked by a
pidfile; stopping signals its whole process group, so helpers it forked go down with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil


def spawn_detached(
    cmd: list[str],
    *,
    log_path: Path,
    pid_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    user: str | None = None,
) -> int:
    """Start `cmd` in a new session with stdout/stderr appended to `log_path`; returns its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            user=user,
            start_new_session=True,
            close_fds=True,
        )
    pid_path.write_text(f"{proc.pid}\n")
    return proc.pid


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def read_pid(pid_path: Path) -> int | None:
    """Pid recorded in `pid_path` if that process still runs, else None."""
    try:
        pid = int(pid_path.read_text().split()[0])
        written_at = pid_path.stat().st_mtime
        proc = psutil.Process(pid)
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    if not _alive(proc):
        return None
    try:
        # A process born after the pidfile was written is a recycled pid, not our daemon.
        if proc.create_time() > written_at + 2.0:
            return None
    except psutil.Error:
        return None
    return pid


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        # Our daemons lead their own session: signal the group so their children stop too.
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def pid_alive(pid: int) -> bool:
    """True if `pid` runs (a zombie awaiting its parent's wait() counts as gone)."""
    try:
        return _alive(psutil.Process(pid))
    except psutil.Error:
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def stop_pid(pid_path: Path, *, timeout: float = 15.0) -> bool:
    """SIGTERM the daemon in `pid_path`, SIGKILL it after `timeout`; True if one was running."""
    pid = read_pid(pid_path)
    if pid is None:
        pid_path.unlink(missing_ok=True)
        return False
    _signal(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        _signal(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)
    pid_path.unlink(missing_ok=True)
    return True


def port_in_use(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def log_tail(log_path: Path | None, max_chars: int = 2000) -> str:
    """Last `max_chars` of a log file ('' if absent)."""
    if log_path is None or not log_path.exists():
        return ""
    with log_path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - max_chars))
        return f.read().decode(errors="replace")


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout: float,
    what: str,
    log_path: Path | None = None,
    pid: int | None = None,
) -> None:
    """Block until host:port accepts connections; TimeoutError naming `what` (and its log tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_in_use(host, port):
            return
        if pid is not None and not pid_alive(pid):
            raise RuntimeError(
                _failure(f"{what} exited before listening on {host}:{port}", log_path)
            )
        time.sleep(0.2)
    raise TimeoutError(
        _failure(f"{what} not listening on {host}:{port} after {timeout:g}s", log_path)
    )


def _failure(message: str, log_path: Path | None) -> str:
    tail = log_tail(log_path)
    return f"{message}; log {log_path}:\n{tail}" if tail else message


def wait_ready(
    probe: Callable[[], tuple[bool, str]],
    *,
    pid: Callable[[], int | None],
    timeout: float,
    what: str,
    log_path: Path,
    every: float = 0.3,
) -> None:
    """Poll `probe` (ready?, what it answered) until it is ready. RuntimeError as soon as the
    daemon (`pid()`) is gone, TimeoutError after `timeout`; both name `what` and its log tail."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        running = pid()
        if running is None or not pid_alive(running):
            raise RuntimeError(_failure(f"{what} exited during startup", log_path))
        ok, last = probe()
        if ok:
            return
        time.sleep(every)
    raise TimeoutError(_failure(f"{what} not ready after {timeout:.0f}s ({last})", log_path))
