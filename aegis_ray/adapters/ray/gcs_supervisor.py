"""The GCS supervisor: restarts the Ray head's GCS server when it dies.

With the head's state in Redis (GCS fault tolerance), a GCS started again on the same port with
the same arguments finds the cluster as it was: raylets, workers and drivers reconnect, detached
actors and placement groups are still there. Ray itself restarts nothing; this daemon does.

`aegis up` / `aegis node start` run it (``python -m aegis_ray.adapters.ray.gcs_supervisor``) in a
session of its own; a GCS it restarts is its child. It notes the command line, environment and
folder of the running GCS while it is alive, and polls it. Its record (JSON, written
atomically) says which GCS process runs now and every restart with how long the GCS was down.

It never fights a deliberate stop: `aegis down` stops it before the head; and once the head's
own raylet is gone (`ray stop`, or the whole head died) it exits rather than start a GCS for a
node that is not there. It never starts a second GCS while something else holds the port.
With an embedded Redis it also restarts that Redis (its append-only file keeps the state).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

import psutil

from aegis_ray.adapters.files import write_private
from aegis_ray.adapters.process import port_in_use
from aegis_ray.adapters.redis_server import EmbeddedRedis

log = logging.getLogger("aegis.gcs_supervisor")

POLL_S = 0.25
# A GCS that dies again and again (e.g. its Redis refuses it) is restarted at most this often.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
BACKOFF_S = 10.0


@dataclass
class Restart:
    at: float  # Unix time the new process started
    pid: int
    down_s: float  # from the moment the old process was seen dead


@dataclass
class Record:
    gcs_pid: int
    raylet_pid: int
    supervisor_pid: int
    restarts: list[Restart] = field(default_factory=list)
    redis_restarts: list[float] = field(default_factory=list)

    def save(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Record | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        data["restarts"] = [Restart(**r) for r in data.get("restarts", [])]
        return cls(**data)


def _named(name: str, *, where: Callable[[psutil.Process], bool]) -> psutil.Process | None:
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] == name and proc.status() != psutil.STATUS_ZOMBIE and where(proc):
                return proc
        except psutil.Error:
            continue
    return None


def find_gcs(port: int) -> psutil.Process | None:
    """The GCS server of the head whose GCS port is `port`."""
    flag = f"--gcs_server_port={port}"
    return _named("gcs_server", where=lambda p: flag in p.cmdline())


def find_head_raylet(session: int) -> psutil.Process | None:
    """The raylet of the head started in Unix session `session` (see ray_head.start_head)."""
    return _named("raylet", where=lambda p: _sid(p.pid) == session)


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class Supervisor:
    def __init__(
        self,
        *,
        gcs_port: int,
        session: int,
        record_path: Path,
        redis: EmbeddedRedis | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.gcs_port = gcs_port
        self.session = session
        self.record_path = record_path
        self.redis = redis
        self.host = host
        self.stopping = False
        self._children: list[subprocess.Popen[bytes]] = []

    def stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping (the GCS is left as it is)", signum)
        self.stopping = True

    def run(self, *, find_timeout_s: float = 60.0) -> int:
        gcs, raylet = self._find(find_timeout_s)
        if gcs is None or raylet is None:
            log.error(
                "no GCS on port %d with a head raylet in session %d", self.gcs_port, self.session
            )
            return 1
        cmd, env, cwd = gcs.cmdline(), gcs.environ(), gcs.cwd()
        record = Record(gcs_pid=gcs.pid, raylet_pid=raylet.pid, supervisor_pid=os.getpid())
        record.save(self.record_path)
        log.info(
            "watching GCS pid %d (port %d), head raylet pid %d", gcs.pid, self.gcs_port, raylet.pid
        )
        recent: list[float] = []
        while not self.stopping:
            time.sleep(POLL_S)
            self._reap()
            if self.redis is not None and self.redis.pid() is None and not self.stopping:
                self._restart_redis(record)
            if not _alive(raylet):
                log.info(
                    "the head's raylet (pid %d) is gone: the head was stopped; exiting", raylet.pid
                )
                return 0
            if _alive(gcs):
                continue
            seen_dead = time.time()
            log.warning("GCS pid %d is gone", gcs.pid)
            if port_in_use(self.host, self.gcs_port):
                log.error(
                    "port %d is held by another process: not starting a second GCS", self.gcs_port
                )
                self._wait(BACKOFF_S)
                continue
            recent = [t for t in recent if t > seen_dead - RESTART_WINDOW_S]
            if len(recent) >= MAX_RESTARTS:
                log.error(
                    "%d restarts within %.0fs: waiting %.0fs",
                    len(recent),
                    RESTART_WINDOW_S,
                    BACKOFF_S,
                )
                self._wait(BACKOFF_S)
            if self.stopping:
                break
            child = subprocess.Popen(
                cmd,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                # The GCS writes its own log files (its arguments say where).
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
            self._children.append(child)
            gcs = psutil.Process(child.pid)
            recent.append(time.time())
            record.gcs_pid = child.pid
            record.restarts.append(
                Restart(at=time.time(), pid=child.pid, down_s=time.time() - seen_dead)
            )
            record.save(self.record_path)
            log.warning("GCS restarted as pid %d", child.pid)
        return 0

    def _find(self, timeout_s: float) -> tuple[psutil.Process | None, psutil.Process | None]:
        deadline = time.monotonic() + timeout_s
        while True:
            gcs, raylet = find_gcs(self.gcs_port), find_head_raylet(self.session)
            if (gcs and raylet) or time.monotonic() > deadline or self.stopping:
                return gcs, raylet
            time.sleep(0.5)

    def _restart_redis(self, record: Record) -> None:
        assert self.redis is not None
        log.warning("Redis (the GCS's store) is gone: restarting it")
        try:
            self.redis.start(timeout=30)
        except (RuntimeError, TimeoutError, OSError) as err:
            log.error("Redis did not restart: %s", err)
            self._wait(BACKOFF_S)
            return
        record.redis_restarts.append(time.time())
        record.save(self.record_path)

    def _reap(self) -> None:
        self._children = [c for c in self._children if c.poll() is None]

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--gcs-port", type=int, required=True)
    parser.add_argument("--ray-session", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--redis-dir", type=Path, help="an embedded Redis to restart too")
    parser.add_argument("--redis-port", type=int)
    parser.add_argument("--redis-bind", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s"
    )
    redis = None
    if args.redis_dir is not None:
        redis = EmbeddedRedis(args.redis_dir, port=args.redis_port, bind=args.redis_bind)
    sup = Supervisor(
        gcs_port=args.gcs_port, session=args.ray_session, record_path=args.record, redis=redis
    )
    signal.signal(signal.SIGTERM, sup.stop)
    signal.signal(signal.SIGINT, sup.stop)
    return sup.run()


if __name__ == "__main__":
    raise SystemExit(main())
