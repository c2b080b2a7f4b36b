"""Starting, attaching to and stopping the local Ray head, with Ray's auth mode set explicitly.

Ray 2.60 turns token auth on by itself in some cases (see ray-facts.md); every aegis process
that talks to Ray therefore gets RAY_AUTH_MODE (and the token path) from ``ray_env``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from aegis_ray.adapters.files import write_private
from aegis_ray.core.naming import RAY_NAMESPACE
from aegis_ray.core.ray_mapping import RayStartArgs

CURRENT_CLUSTER_FILE = Path("/tmp/ray/ray_current_cluster")
USER_TOKEN_FILE = Path.home() / ".ray" / "auth_token"
# Agent data does not travel through Ray's object store: keep it small on a shared machine.
OBJECT_STORE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class RayTls:
    """Ray's mutual TLS (NodeConfig spec.ray_tls): Ray reads these files in every process that
    serves or opens one of its gRPC channels (ray/_common/tls_utils.py and the C++ core)."""

    cert_file: str
    key_file: str
    ca_file: str

    def env(self) -> dict[str, str]:
        return {
            "RAY_USE_TLS": "1",
            "RAY_TLS_SERVER_CERT": self.cert_file,
            "RAY_TLS_SERVER_KEY": self.key_file,
            "RAY_TLS_CA_CERT": self.ca_file,
        }


@dataclass(frozen=True)
class RayAuth:
    """How this node's Ray processes and drivers authenticate: the auth mode (and token), and
    Ray's TLS when `tls` is set (else whatever the environment says, by default off)."""

    mode: str  # "token" | "disabled"
    token_path: str | None = None
    tls: RayTls | None = None

    def env(self) -> dict[str, str]:
        out = {"RAY_AUTH_MODE": self.mode}
        if self.token_path:
            out["RAY_AUTH_TOKEN_PATH"] = self.token_path
        return out | (self.tls.env() if self.tls else {})

    def apply(self) -> None:
        """Set this auth mode for the current process (before any Ray call)."""
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.update(self.env())


def new_token_auth(token_path: Path) -> RayAuth:
    """Token mode with a token of our own under AEGIS_HOME (created once)."""
    if not token_path.exists():
        write_private(token_path, secrets.token_hex(32), replace=False)
    return RayAuth("token", str(token_path))


def auth_for_existing_cluster(home: Path) -> RayAuth:
    """Guess how a hand-started head authenticates, the way Ray itself decides.

    A token given as RAY_AUTH_TOKEN is kept in a private file under `home` (AEGIS_HOME)."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode:
        path = os.environ.get("RAY_AUTH_TOKEN_PATH")
        if mode.lower() == "token" and not path:
            path = _token_file_from_env(home) or str(USER_TOKEN_FILE)
        return RayAuth(mode.lower(), path)
    if USER_TOKEN_FILE.exists():
        return RayAuth("token", str(USER_TOKEN_FILE))
    return RayAuth("disabled")


def _token_file_from_env(home: Path) -> str | None:
    """A token given as RAY_AUTH_TOKEN, kept in a private file (RayAuth passes paths only)."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    if not token:
        return None
    path = home / "ray_auth_token.attached"
    write_private(path, token)
    return str(path)


def running_local_cluster() -> str | None:
    """Address of a Ray cluster already started on this machine, if its GCS answers."""
    from aegis_ray.adapters.process import port_in_use

    if not CURRENT_CLUSTER_FILE.exists():
        return None
    address = CURRENT_CLUSTER_FILE.read_text().strip()
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and port_in_use(host, int(port)):
        return address
    return None


def ray_cli() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def start_head(
    args: RayStartArgs,
    *,
    auth: RayAuth,
    port: int,
    dashboard_port: int,
    log_path: Path,
    extra_args: Sequence[str] = (),
    monitor: bool = True,
    env: Mapping[str, str] | None = None,
    started: Callable[[int], None] | None = None,
    store: GcsStoreArgs | None = None,
) -> tuple[str, int]:
    """`ray start --head` with the node's resources and labels; `monitor` False leaves out the
    autoscaler's monitor (unless the cluster launcher autoscales); `env` is added to the
    environment every process of the node inherits (e.g. Serve's proxy settings); `store` keeps
    the GCS's state in Redis (GCS fault tolerance).

    Returns the GCS address and the id of the new Unix session that every process of this Ray
    node (GCS, raylet, dashboard, workers) inherits: `stop_session` stops exactly those, where
    `ray stop` would stop every Ray process on the machine. `started` is given that session id
    as soon as the session exists, before Ray has come up: a caller stopped in between (Ctrl-C)
    has recorded what to stop.
    """
    autoscaled = any(a.startswith("--autoscaling-config") for a in extra_args)
    session = _ray_start(
        [
            "--head",
            f"--port={port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            # The autoscaler's monitor (~50 MiB) scales under the cluster launcher, and is
            # where `ray status` gets the cluster's state from.
            *([] if autoscaled or monitor else ["--no-monitor"]),
            *args.cli_args(),
            *extra_args,  # e.g. the cluster launcher's --autoscaling-config
            *(store.args() if store else []),
        ],
        auth=auth,
        log_path=log_path,
        env=dict(env or {}) | (store.env() if store else {}),
        secret=store.password if store else None,
        started=started,
    )
    # Ray never advertises loopback as a node address: it picks this machine's own IP, and
    # records the address it chose here.
    return running_local_cluster() or f"127.0.0.1:{port}", session


def start_worker(
    args: RayStartArgs,
    *,
    address: str,
    auth: RayAuth,
    extra_args: list[str],
    log_path: Path,
    started: Callable[[int], None] | None = None,
    gcs_reconnect_timeout_s: int | None = None,
) -> int:
    """`ray start --address` for a worker node in a Unix session of its own; returns the session
    id (see `start_head`, also for `started`). `gcs_reconnect_timeout_s`: how long its raylet
    and workers wait for a GCS that went away (a head restarting) before they give up."""
    return _ray_start(
        [f"--address={address}", *args.cli_args(), *extra_args],
        auth=auth,
        log_path=log_path,
        started=started,
        env=reconnect_env(gcs_reconnect_timeout_s),
    )


def reconnect_env(timeout_s: int | None) -> dict[str, str]:
    """Ray's setting for how long raylets, workers and drivers retry a GCS that is gone."""
    return {} if timeout_s is None else {"RAY_gcs_rpc_server_reconnect_timeout_s": str(timeout_s)}


@dataclass(frozen=True)
class GcsStoreArgs:
    """What `ray start --head` needs to keep the GCS's state in Redis (GCS fault tolerance)."""

    redis_address: str  # host:port, or rediss://host:port for TLS
    password: str  # "" for a Redis that asks for none
    namespace: str  # this cluster's key prefix in Redis (one Redis may hold several clusters)
    reconnect_timeout_s: int

    def args(self) -> list[str]:
        # Ray 2.60 has no --redis-address flag: the address is RAY_REDIS_ADDRESS (env below).
        return ["--redis-password", self.password] if self.password else []

    def env(self) -> dict[str, str]:
        return {
            "RAY_REDIS_ADDRESS": self.redis_address,
            "RAY_external_storage_namespace": self.namespace,
        } | reconnect_env(self.reconnect_timeout_s)


def _ray_start(
    args: list[str],
    *,
    auth: RayAuth,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    started: Callable[[int], None] | None = None,
    secret: str | None = None,
) -> int:
    """Run `ray start ARGS` in a new Unix session with this auth mode and `env` added; returns
    the session id (also given to `started` once the session exists). `secret` (a value among
    ARGS) is not written to the log."""
    cmd = [
        ray_cli(), "start", f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--disable-usage-stats",
        # Nobody reads workers' output through a driver: agents' logs go through the node
        # agent, Ray's own stay in files the dashboard shows. Saves a process per node (~50 MiB)
        # and the CPU it spent tailing every worker's log files.
        "--include-log-monitor=false",
        *args,
    ]  # fmt: skip
    full_env = os.environ | dict(env or {}) | auth.env()
    full_env.pop("RAY_AUTH_TOKEN", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as out:
        shown = [("***" if secret and word == secret else word) for word in cmd]
        out.write("$ " + " ".join(shown) + "\n")
        out.flush()
        proc = subprocess.Popen(
            cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        if started is not None:
            started(proc.pid)
        returncode = proc.wait(timeout=180)
    if returncode != 0:
        tail = log_path.read_text()[-2000:]
        stop_session(proc.pid)
        raise RuntimeError(f"`ray start {args[0]}` failed (exit {returncode}):\n{tail}")
    return proc.pid


def session_pids(sid: int) -> list[int]:
    out = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid:
                out.append(pid)
        except OSError:
            continue
    return out


def stop_session(sid: int, *, grace_s: float = 10.0) -> int:
    """SIGTERM every process of a Ray node started by `start_head`, SIGKILL what remains."""
    procs = []
    for pid in session_pids(sid):
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    return len(procs)


def connect(address: str, auth: RayAuth, *, purpose: str = "aegis driver") -> None:
    """Attach this process to the cluster as a driver in the aegis namespace; `purpose` names
    the driver's job in the Ray dashboard (e.g. "aegis up")."""
    auth.apply()  # before Ray reads its auth configuration
    import ray
    from ray._raylet import Config
    from ray.job_config import JobConfig

    Config.initialize("")  # re-read RAY_AUTH_MODE should Ray have been imported already
    if not ray.is_initialized():
        import aegis_ray

        metadata = {
            "job_name": purpose,
            "aegis.version": aegis_ray.__version__,
            "aegis.command": " ".join(["aegis", *sys.argv[1:]])[:200],
        }
        ray.init(
            address=address,
            namespace=RAY_NAMESPACE,
            log_to_driver=False,
            logging_level="WARNING",
            configure_logging=False,
            job_config=JobConfig(metadata=metadata),
        )


def session_dir() -> str:
    """The session directory of the cluster this driver is connected to (where Ray writes its
    metrics service-discovery file); "" if unknown."""
    try:
        from ray._private import worker  # private: Ray is pinned in pyproject

        return str(worker.global_worker.node.get_session_dir_path())
    except Exception:  # not connected, or Ray moved it
        return ""
