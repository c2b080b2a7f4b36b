"""Runtime settings of one aegis installation, read from the environment (prefix ``AEGIS_``).

Everything `aegis up` starts lives under ``home`` (default ``~/.aegis``). Where an external URL
is given (``AEGIS_DATABASE_URL``, ``AEGIS_TEMPORAL_ADDRESS``, ``AEGIS_OPENBAO_ADDR``, or the
NodeConfig's ``spec.database`` / ``spec.temporal`` / ``spec.secrets``), that service is used and
nothing is started for it.
A value set here in the environment wins over the NodeConfig's.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from aegis_ray.core.naming import TASK_QUEUE


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AEGIS_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".aegis")
    # Control plane API (Ray Serve HTTP proxy). Loopback unless the operator says otherwise.
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    grpc_port: int = 50051
    # Where CLI commands send gRPC calls (`aegis --api grpc`); defaults to api_host:grpc_port.
    grpc_address: str | None = None
    # Ray head.
    ray_port: int = 6379
    ray_dashboard_port: int = 8265
    # The head's autoscaler monitor: `ray status` reports the cluster from what it writes.
    # false saves its ~50 MiB; `ray status` then says "No cluster status".
    ray_monitor: bool = True
    ray_address: str | None = None  # attach to this cluster instead of starting a head
    # Attach to a Ray cluster already running on this machine (`ray start --head` by hand).
    # Tests turn this off so that they never touch a developer's cluster.
    ray_attach: bool = True
    # Embedded services; a configured URL means "use the external one".
    database_url: str | None = None
    # The external database's password, kept out of URLs in files and off command lines:
    # the value itself, or a file only this user can read (mode 0600).
    database_password: SecretStr | None = None
    database_password_file: Path | None = None
    postgres_port: int = 55432
    temporal_address: str | None = None
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    temporal_namespace: str = "default"
    # `aegis up --monitoring`: the Prometheus it starts (loopback).
    prometheus_port: int = 9090
    task_queue: str = TASK_QUEUE
    # OpenBao: an external server (with the AppRole the control plane logs in with), else the
    # embedded one `aegis up` starts on 127.0.0.1:openbao_port (and openbao_port + 1 for its
    # cluster listener). The secret id: the value itself, or a file only this user can read.
    openbao_addr: str | None = None
    openbao_role_id: str | None = None
    openbao_secret_id: SecretStr | None = None
    openbao_secret_id_file: Path | None = None
    openbao_ca_file: Path | None = None
    openbao_mount: str = "secret"
    openbao_port: int = 8200
    # Where CLI commands send their requests; defaults to http://api_host:api_port.
    api_url: str | None = None
    api_token: str | None = None
    # How long an edge waits for an unreachable orchestrator (`ray up` starts both at once).
    register_wait_s: float = 300.0
    # How long an execution row may sit unchanged before the reconciler checks its workflow.
    orphan_grace_s: float = 60.0
    # Extra `ray start` arguments for `aegis node start` (shell words), after its --ray-arg.
    ray_args: str = ""

    @property
    def api_base_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def ray_arg_list(self) -> list[str]:
        return shlex.split(self.ray_args)

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin.token"

    @property
    def ray_token_path(self) -> Path:
        return self.home / "ray_auth_token"

    @property
    def state_path(self) -> Path:
        """Record of what `aegis up` started, so `aegis down` stops exactly that."""
        return self.home / "up.json"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"
