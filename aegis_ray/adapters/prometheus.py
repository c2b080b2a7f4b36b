"""A Prometheus server (Debian's `prometheus` package) scraping aegis: Ray's metrics through the
service-discovery file Ray writes in its session directory (every node's metrics agent: the
control plane's and the node agents' `ray_aegis_*` metrics, and Ray's own), and the API's
`/metrics` with the admin token. Config, data, log and pidfile live in `data_dir`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from aegis_ray.adapters.process import (
    log_tail,
    pid_alive,
    port_in_use,
    read_pid,
    spawn_detached,
    stop_pid,
)

HOST = "127.0.0.1"
SERVICE_DISCOVERY_FILE = "prom_metrics_service_discovery.json"
SCRAPE_INTERVAL = "5s"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise RuntimeError(
            "the `prometheus` binary was not found on PATH: apt-get install prometheus "
            "(scripts/setup.sh does)"
        )
    return found


class PrometheusServer:
    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 9090,
        ray_session_dir: str,
        api_address: str,
        api_token_file: Path,
    ) -> None:
        if not 1 <= port <= 65535:
            raise ValueError(f"prometheus port: {port!r} is not a TCP port (1-65535)")
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.ray_sd = Path(ray_session_dir) / SERVICE_DISCOVERY_FILE
        self.api_address = api_address
        self.api_token_file = Path(api_token_file).absolute()
        self.config_path = self.data_dir / "prometheus.yml"
        self.log_path = self.data_dir / "prometheus.log"
        self.pid_path = self.data_dir / "prometheus.pid"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [
                {
                    # Ray's file labels its targets job="ray".
                    "job_name": "ray",
                    "file_sd_configs": [{"files": [str(self.ray_sd)], "refresh_interval": "5s"}],
                },
                {
                    "job_name": "aegis-api",
                    "metrics_path": "/metrics",
                    "authorization": {
                        "type": "Bearer",
                        "credentials_file": str(self.api_token_file),
                    },
                    "static_configs": [{"targets": [self.api_address]}],
                },
            ],
        }

    def start(self, *, timeout: float = 60.0) -> str:
        """Start it unless it runs; wait until it is ready; returns its URL."""
        if read_pid(self.pid_path) is None:
            if port_in_use(HOST, self.port):
                raise RuntimeError(
                    f"cannot start Prometheus: {HOST}:{self.port} is in use; pick another "
                    "port with AEGIS_PROMETHEUS_PORT"
                )
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
            spawn_detached(
                [
                    prometheus_binary(),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.data_dir / 'data'}",
                    f"--web.listen-address={HOST}:{self.port}",
                    "--storage.tsdb.retention.time=7d",
                ],
                log_path=self.log_path,
                pid_path=self.pid_path,
                cwd=self.data_dir,
            )
        self._wait_ready(timeout)
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            pid = read_pid(self.pid_path)
            if pid is None or not pid_alive(pid):
                raise RuntimeError(
                    f"Prometheus exited during startup; log {self.log_path}:\n"
                    f"{log_tail(self.log_path)}"
                )
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError as err:
                last = str(err)
            time.sleep(0.3)
        raise TimeoutError(f"Prometheus at {self.url} not ready after {timeout:.0f}s ({last})")

    def stop(self) -> bool:
        """Stop it (SIGTERM, then SIGKILL); False when it was not running."""
        return stop_pid(self.pid_path)
