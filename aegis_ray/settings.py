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
from typing import Literal

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
    # TLS of the APIs this node serves (the NodeConfig's spec.api.tls): certificate and key.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # The CA that clients (CLI, SDK, edges registering) verify the API's certificate with;
    # an https:// API with none is verified against the system's CAs.
    ca_file: Path | None = None
    # Ray's own mutual TLS between its processes (NodeConfig spec.ray_tls; AEGIS_RAY_TLS_*):
    # all three or none, on every node of the cluster.
    ray_tls_cert_file: Path | None = None
    ray_tls_key_file: Path | None = None
    ray_tls_ca_file: Path | None = None
    # Ray head.
    ray_port: int = 6379
    ray_dashboard_port: int = 8265
    # The head's autoscaler monitor: `ray status` reports the cluster from what it writes.
    # false saves its ~50 MiB; `ray status` then says "No cluster status".
    ray_monitor: bool = True
    # Where the head keeps Ray's cluster state (GCS fault tolerance; NodeConfig spec.gcs):
    # "redis" survives a GCS restart (an embedded Redis unless gcs_redis_url names one),
    # "memory" is Ray's default and does not.
    gcs_store: Literal["redis", "memory"] = "redis"
    gcs_redis_url: str | None = None
    gcs_redis_password_file: Path | None = None  # the external Redis's password (mode 0600)
    gcs_redis_bind: str = "127.0.0.1"  # the embedded Redis's listen address
    gcs_redis_port: int | None = None  # the embedded Redis's port; default ray_port + 1
    # How long raylets and workers wait for a GCS that went away before they give up (Ray's
    # RAY_gcs_rpc_server_reconnect_timeout_s, 60 by default): longer than a GCS restart.
    gcs_reconnect_timeout_s: int = 120
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
    # How long the CLI's and SDK's followers (submit -f, logs -f, wait, get -w, events -f)
    # keep getting back to an API that went away before giving up (exit 3).
    follow_outage_s: float = Field(default=300.0, gt=0)
    # How long an edge waits for an unreachable orchestrator (`ray up` starts both at once).
    register_wait_s: float = 300.0
    # How long an execution row may sit unchanged before the reconciler checks its workflow.
    orphan_grace_s: float = 60.0
    # Trust (issue 12). A join token lives at most this long (the default is shorter); user
    # tokens at most token_max_ttl_s; neither is eternal unless the admin asks explicitly.
    join_token_max_ttl_s: float = Field(default=900.0, gt=0)
    token_max_ttl_s: float = Field(default=365 * 86400.0, gt=0)
    # Open watch/follow streams per token, per tenant and in all on one API replica (the total
    # stays below the replica's 200 request slots), and a stream's lifetime (clients resume).
    api_streams_per_token: int = Field(default=16, ge=1)
    api_streams_per_tenant: int = Field(default=64, ge=1)
    api_streams_total: int = Field(default=150, ge=1, le=190)
    api_stream_max_s: float = Field(default=3600.0, gt=0)
    # Submissions per token: a burst, then this many per second.
    api_submit_per_s: float = Field(default=5.0, gt=0)
    api_submit_burst: int = Field(default=20, ge=1)
    # Request size limits, enforced by Serve's proxies before a body is read.
    max_body_bytes: int = Field(default=(1 << 20) + (64 << 10), ge=1024)
    grpc_max_message_bytes: int = Field(default=16 << 20, ge=1 << 20, le=(1 << 31) - 1)
    # How long the control plane rides out an outage of PostgreSQL: running executions keep
    # running (log lines wait on their node, state updates are retried with backoff); past
    # this, the attempt ends with that reason.
    store_outage_s: float = Field(default=300.0, gt=0)
    # Log lines stored in PostgreSQL: a longer line is cut (marked, with what was dropped), and
    # an execution's output beyond the quota is counted but not stored.
    log_line_max_bytes: int = Field(default=64 << 10, ge=256)
    log_max_bytes: int = Field(default=64 << 20, ge=1 << 10)
    # The reconciler's lease (one orchestrator sweeps): a new holder takes over this long after
    # the last renewal, plus one round (5 s).
    lease_ttl_s: float = Field(default=15.0, gt=0)
    # Connections each orchestrator's control plane may hold (spec.database.pool_size wins
    # over the default; the environment over both). Size it so that orchestrators x pool_size
    # stays under PostgreSQL's max_connections.
    database_pool_size: int = Field(default=10, ge=2, le=200)
    # Orchestrators serving the API, one Serve replica each (spec.api.orchestrators).
    orchestrators: int = Field(default=1, ge=1, le=3)
    # Extra `ray start` arguments for `aegis node start` (shell words), after its --ray-arg.
    ray_args: str = ""

    def api_limits(self) -> dict[str, float]:
        """The control plane's limits (ControlPlaneConfig.limits, api/limits.py)."""
        return {
            "join_token_max_ttl_s": self.join_token_max_ttl_s,
            "token_max_ttl_s": self.token_max_ttl_s,
            "streams_per_token": self.api_streams_per_token,
            "streams_per_tenant": self.api_streams_per_tenant,
            "streams_total": self.api_streams_total,
            "stream_max_s": self.api_stream_max_s,
            "submit_per_s": self.api_submit_per_s,
            "submit_burst": self.api_submit_burst,
        }

    @property
    def api_base_url(self) -> str:
        scheme = "https" if self.tls_cert_file else "http"
        return self.api_url or f"{scheme}://{self.api_host}:{self.api_port}"

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
    def redis_port(self) -> int:
        return self.gcs_redis_port or self.ray_port + 1

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"
