"""Watchdog that removes an attempt's containers once the launch actor's process is gone.

A launch actor can die without running any cleanup: removing its placement group or losing the
node's raylet kills the worker process outright, so atexit and signal handlers never run. Before
it creates a container the actor spawns this small process and keeps the write end of a pipe to
it. The kernel closes that end however the actor dies, so end-of-file means "owner gone": the
reaper force-removes every container labelled with the attempt. A byte on the pipe means
"released": the owner cleaned up itself. If the owner outlives the hard deadline (wedged), the
reaper kills the containers but leaves them for the owner to collect.
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import aegis_ray

# Extra time the actor gets to enforce the hard deadline itself before the reaper does.
DEADLINE_MARGIN_S = 30.0
REMOVE_TRIES = 5


class Reaper:
    """The owner's end of the pipe: keep it open while the container may live."""

    def __init__(self, write_fd: int) -> None:
        self._fd: int | None = write_fd

    def release(self) -> None:
        """The owner removed its container itself: the reaper exits without acting."""
        if self._fd is None:
            return
        try:
            os.write(self._fd, b"r")
        finally:
            os.close(self._fd)
            self._fd = None


def spawn_reaper(execution_id: str, attempt: int, hard_deadline_s: float | None) -> Reaper:
    """Start a reaper for one attempt's containers, bound to this process's lifetime."""
    read_fd, write_fd = os.pipe()  # both non-inheritable: only the reaper gets read_fd
    args = [
        sys.executable,
        "-m",
        "aegis_ray.adapters.docker.reaper",
        "--fd",
        str(read_fd),
        "--execution-id",
        execution_id,
        "--attempt",
        str(attempt),
    ]
    if hard_deadline_s is not None:
        args += ["--kill-after", str(hard_deadline_s + DEADLINE_MARGIN_S)]
    # The package may reach a Ray worker through sys.path rather than an install.
    env = dict(os.environ)
    root = str(Path(aegis_ray.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.Popen(
            args,
            pass_fds=(read_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        # The first process forks the real reaper and exits at once (see main).
        proc.wait(timeout=30)
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    return Reaper(write_fd)


def _containers(execution_id: str, attempt: int) -> tuple[object, list[str]]:
    import docker

    from aegis_ray.adapters.docker.container import LABEL_ATTEMPT, LABEL_EXECUTION_ID, LABEL_MANAGED

    client = docker.from_env(timeout=30)
    labels = [
        f"{LABEL_EXECUTION_ID}={execution_id}",
        f"{LABEL_ATTEMPT}={attempt}",
        f"{LABEL_MANAGED}=true",
    ]
    found = client.api.containers(all=True, filters={"label": labels})
    return client, [c["Id"] for c in found]


def _act(execution_id: str, attempt: int, *, remove: bool) -> None:
    for i in range(REMOVE_TRIES):
        try:
            client, ids = _containers(execution_id, attempt)
            for cid in ids:
                if remove:
                    client.api.remove_container(cid, force=True, v=True)  # type: ignore[attr-defined]
                else:
                    client.api.kill(cid)  # type: ignore[attr-defined]
                print(
                    f"aegis reaper: {'removed' if remove else 'killed'} container {cid[:12]} "
                    f"of execution {execution_id} attempt {attempt}",
                    file=sys.stderr,
                )
            return
        except Exception as err:  # engine restarting, container gone meanwhile: try again
            print(f"aegis reaper: {err}", file=sys.stderr)
            time.sleep(2 * (i + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--execution-id", required=True)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--kill-after", type=float, default=None)
    args = parser.parse_args(argv)
    # Leave the owner's process tree: Ray kills a worker's child processes when it exits.
    if os.fork() > 0:
        os._exit(0)
    deadline = None if args.kill_after is None else time.monotonic() + args.kill_after
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([args.fd], [], [], timeout)
        if not ready:
            _act(args.execution_id, args.attempt, remove=False)
            deadline = None
            continue
        if os.read(args.fd, 1):
            return 0  # released by the owner
        _act(args.execution_id, args.attempt, remove=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
