"""`aegis up` / `aegis down`: bring up a hybrid node with its control plane, and take it down.

What `up` started is recorded in ``$AEGIS_HOME/up.json`` so that `down` stops exactly that and
nothing it merely attached to (an external PostgreSQL, Temporal or OpenBao, a hand-started Ray
head).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import yaml

import aegis_ray
from aegis_ray.adapters.files import make_private_home, private_umask, write_private
from aegis_ray.adapters.openbao.server import EmbeddedOpenBao
from aegis_ray.adapters.postgres.embedded import EmbeddedPostgres
from aegis_ray.adapters.process import read_pid, spawn_detached, stop_pid, wait_for_port
from aegis_ray.adapters.prometheus import PrometheusServer
from aegis_ray.adapters.ray import head as ray_head
from aegis_ray.adapters.redis_server import EmbeddedRedis
from aegis_ray.adapters.temporal.dev_server import TemporalDevServer, ensure_search_attributes
from aegis_ray.core.models.node import NodeConfig
from aegis_ray.core.ray_mapping import ray_start_args
from aegis_ray.node.local_config import default_node_config
from aegis_ray.node.services import (
    GcsStore,
    ServiceConfigError,
    check_ha,
    external_database_url,
    external_openbao,
    gcs_store,
    head_settings,
    ray_tls,
)
from aegis_ray.settings import Settings

SERVE_APP = "aegis"
# What aegis keeps in AEGIS_HOME (made private by `aegis up` and `aegis node start`).
HOME_ENTRIES = (
    "admin.token", "ray_auth_token", "up.json", "logs", "postgres", "temporal", "prometheus",
    "openbao", "nodes", "grpc-tls.pid",
)  # fmt: skip
# Package data, so that a wheel install finds it; serve/aegis.yaml links here for `serve deploy`.
SERVE_CONFIG = "serve.yaml"
Say = Callable[[str], None]


@dataclass
class UpState:
    ray_address: str = ""
    ray_auth_mode: str = "disabled"
    ray_token_path: str | None = None
    implicit_head: bool = False
    database_url: str = ""
    temporal_address: str = ""
    api_url: str = ""
    grpc_address: str = ""
    dashboard_url: str = ""
    node_id: str = ""
    ray_session: int = 0  # Unix session id of the Ray head we started (see ray_head.start_head)
    ray_session_dir: str = ""  # Ray's own session directory (its metrics discovery file)
    prometheus_url: str = ""
    # How the control plane reaches OpenBao (OpenBaoAccess's fields: where the AppRole secret
    # id is, never the id itself).
    openbao: dict[str, Any] = field(default_factory=dict)
    # The CA local clients verify the API with (the NodeConfig's spec.api.tls), or "".
    ca_file: str = ""
    # Where the head keeps Ray's state: memory / embedded (Redis under AEGIS_HOME) / external.
    gcs_store: str = "memory"
    gcs_namespace: str = ""  # this head's key prefix in Redis (RAY_external_storage_namespace)
    redis_address: str = ""
    redis_password_file: str = ""  # an external Redis's (`down` removes this head's keys)
    # ray / postgres / temporal / prometheus / openbao / redis / gcs_supervisor / grpc_tls (the
    # TLS front of Serve's gRPC proxy)
    started: dict[str, bool] = field(default_factory=dict)
    # Ports an iptables rule of ours keeps to loopback (Serve's gRPC proxy binds every address).
    loopback_ports: list[int] = field(default_factory=list)
    # Ray's TLS (RayTls's fields: the files), {} when off.
    ray_tls: dict[str, str] = field(default_factory=dict)

    @property
    def auth(self) -> ray_head.RayAuth:
        tls = ray_head.RayTls(**self.ray_tls) if self.ray_tls else None
        return ray_head.RayAuth(self.ray_auth_mode, self.ray_token_path, tls)

    def save(self, path: Path) -> None:
        # Holds the database URL (with its password): private to this user.
        write_private(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> UpState | None:
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))


def postgres(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.home / "postgres", port=settings.postgres_port)


def temporal(settings: Settings) -> TemporalDevServer:
    return TemporalDevServer(
        settings.home / "temporal",
        port=settings.temporal_port,
        ui_port=settings.temporal_ui_port,
        namespace=settings.temporal_namespace,
    )


def prometheus(settings: Settings, state: UpState) -> PrometheusServer:
    return PrometheusServer(
        settings.home / "prometheus",
        port=settings.prometheus_port,
        ray_session_dir=state.ray_session_dir,
        api_address=f"{settings.api_host}:{settings.api_port}",
        api_token_file=settings.admin_token_path,
    )


def openbao(settings: Settings) -> EmbeddedOpenBao:
    return EmbeddedOpenBao(settings.home / "openbao", port=settings.openbao_port)


def up(
    settings: Settings,
    node: NodeConfig | None,
    say: Say,
    *,
    ray_args: Sequence[str] = (),
    join_secret: str | None = None,
    join_node_types: Sequence[str] = (),
    monitoring: bool = False,
) -> UpState:
    """Start (or find running) everything a head node needs; idempotent.

    PostgreSQL and Temporal are the external ones the environment or the NodeConfig names
    (see node.services), else embedded ones started here.
    `ray_args` go to `ray start --head` (e.g. the cluster launcher's --autoscaling-config).
    `join_secret` (a pre-shared secret, `ray up`) is accepted as a join token from before the
    API answers, so no edge that reaches the API is refused for want of it: for node ids of
    `join_node_types` (`<type>-...`), each once.
    `monitoring` also starts Prometheus (adapters/prometheus.py) and points the Ray
    dashboard's metrics pages at it."""
    settings = head_settings(settings, node)
    # They refuse before anything starts.
    external_database = external_database_url(settings)
    external_secrets = external_openbao(settings, node)
    _check_tls(settings)
    tls = ray_tls(settings)
    store = gcs_store(settings)
    check_ha(settings, external_database, external_secrets)
    home = settings.home
    private_umask()  # logs, temporal.db... of the daemons started below: 0600
    make_private_home(home, HOME_ENTRIES)
    settings.logs_dir.mkdir(mode=0o700, exist_ok=True)
    state = UpState.load(settings.state_path) or UpState()

    if external_database:
        state.database_url = external_database
    else:
        say("PostgreSQL (embedded)")
        state.database_url = postgres(settings).start()
        state.started["postgres"] = True
    state.save(settings.state_path)

    if settings.temporal_address:
        state.temporal_address = settings.temporal_address
        # The Temporal UI finds executions by agent, tenant and node only where they exist.
        refused = ensure_search_attributes(state.temporal_address, settings.temporal_namespace)
        if refused:
            say(f"(workflows will carry no aegis search attributes: {refused})")
    else:
        say("Temporal dev server")
        server = temporal(settings)
        server.start()
        state.temporal_address = server.address
        state.started["temporal"] = True
    state.save(settings.state_path)

    if monitoring:
        # Read by the Ray dashboard when it starts: its metrics pages ask this Prometheus.
        os.environ.setdefault("RAY_PROMETHEUS_HOST", f"http://127.0.0.1:{settings.prometheus_port}")

    if external_secrets is None:
        say("OpenBao (embedded)")
        external_secrets = openbao(settings).start()
        state.started["openbao"] = True
    state.openbao = asdict(external_secrets)
    state.save(settings.state_path)

    _ray(settings, node, state, say, ray_args, store, tls)
    state.save(settings.state_path)

    say("admin token" + (" and join secret" if join_secret else ""))
    _register_tokens(settings, state.database_url, join_secret, list(join_node_types))

    say("control plane (Ray Serve: REST API + Temporal worker)")
    deploy_control_plane(settings, state)
    state.api_url = settings.api_base_url
    state.grpc_address = f"127.0.0.1:{settings.grpc_port}"
    state.ca_file = str(settings.ca_file) if settings.tls_cert_file and settings.ca_file else ""
    _guard_grpc(settings, state, say)
    state.save(settings.state_path)
    wait_healthy(state.api_url, timeout=120, ca_file=state.ca_file or None)
    start_node_agent()
    if monitoring:
        say("Prometheus (Ray's metrics and the API's /metrics)")
        state.prometheus_url = prometheus(settings, state).start()
        state.started["prometheus"] = True
        state.save(settings.state_path)
    return state


def start_node_agent() -> None:
    """The node agent of this machine, if it runs containers (Ray driver connected).

    The reconciler would create it within seconds anyway; starting it here means `aegis up`
    returns with the agent up and shown in the dashboard, and the first execution does not wait.
    """
    import ray

    from aegis_ray.adapters.ray.cluster_state import cluster_view
    from aegis_ray.core.models.node import EXECUTING_ROLES
    from aegis_ray.node_agent.actor import ensure_node_agent

    here = ray.get_runtime_context().get_node_id()
    view = cluster_view()
    me = next((n for n in view.nodes if n.ray_node_id == here), None)
    if me is None or me.role not in EXECUTING_ROLES:
        return
    agent = ensure_node_agent(me.node_id, ray_node_id=here if view.implicit_head else None)
    ray.get(agent.ping.remote(), timeout=120)


def _ray(
    settings: Settings,
    node: NodeConfig | None,
    state: UpState,
    say: Say,
    ray_args: Sequence[str],
    store: GcsStore,
    tls: ray_head.RayTls | None,
) -> None:
    if state.started.get("ray") and ray_head.session_pids(state.ray_session):
        say(f"Ray head already running at {state.ray_address}")
        if state.auth.tls != tls:
            raise ServiceConfigError(
                "Ray's TLS (spec.ray_tls / AEGIS_RAY_TLS_*) differs from the running head's: "
                "`aegis down` first, then `aegis up` with the new setting"
            )
        auth = state.auth
        _ensure_gcs_supervisor(settings, state, say)
    elif settings.ray_address or (settings.ray_attach and ray_head.running_local_cluster()):
        address = settings.ray_address or ray_head.running_local_cluster() or ""
        _refuse_gcs_store_when_attaching(settings, node)
        say(f"attaching to the running Ray cluster at {address}")
        auth = replace(ray_head.auth_for_existing_cluster(settings.home), tls=tls)
        state.ray_address = address
        state.started["ray"] = False
    else:
        cfg = node or default_node_config(settings.home)
        state.node_id = cfg.spec.node.id
        say(f"Ray head (hybrid node {cfg.spec.node.id})")
        auth = replace(ray_head.new_token_auth(settings.ray_token_path), tls=tls)
        store_args = _gcs_store_args(settings, state, store, say)

        def record(session: int) -> None:
            # Before Ray is up: stopped now (Ctrl-C, SIGTERM), `down` still knows what to stop.
            state.ray_session, state.started["ray"] = session, True
            state.ray_address = f"127.0.0.1:{settings.ray_port}"
            _record_auth(state, auth)
            state.save(settings.state_path)

        state.ray_address, state.ray_session = ray_head.start_head(
            ray_start_args(cfg),
            auth=auth,
            port=settings.ray_port,
            dashboard_port=settings.ray_dashboard_port,
            log_path=settings.logs_dir / "ray.log",
            extra_args=ray_args,
            monitor=settings.ray_monitor,
            env=serve_proxy_env(settings),
            started=record,
            store=store_args,
        )
        state.started["ray"] = True
        state.dashboard_url = f"http://127.0.0.1:{settings.ray_dashboard_port}"
        state.save(settings.state_path)
        _ensure_gcs_supervisor(settings, state, say)
    _record_auth(state, auth)
    state.save(settings.state_path)
    ray_head.connect(state.ray_address, auth, purpose="aegis up")
    from aegis_ray.adapters.ray.cluster_state import cluster_view

    state.implicit_head = cluster_view().implicit_head
    state.ray_session_dir = ray_head.session_dir()


def _record_auth(state: UpState, auth: ray_head.RayAuth) -> None:
    state.ray_auth_mode, state.ray_token_path = auth.mode, auth.token_path
    state.ray_tls = asdict(auth.tls) if auth.tls else {}


def serve_config() -> dict[str, Any]:
    """The control plane's Ray Serve config, as shipped in the package."""
    data: dict[str, Any] = yaml.safe_load(
        files("aegis_ray.node").joinpath(SERVE_CONFIG).read_text()
    )
    return data


def serve_proxy_env(settings: Settings) -> dict[str, str]:
    """What Serve's proxies read from their environment when Ray starts them: the REST body
    limit (a middleware refusing before the body is read) and gRPC's message size limit."""
    return {
        "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "aegis_ray.api.proxy_limits:proxy_middlewares",
        "AEGIS_MAX_BODY_BYTES": str(settings.max_body_bytes),
        "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(settings.grpc_max_message_bytes),
    }


def control_plane_args(state: UpState, settings: Settings) -> dict[str, Any]:
    app = next(a for a in serve_config()["applications"] if a["name"] == SERVE_APP)
    return dict(app.get("args", {})) | {
        "limits": settings.api_limits(),
        "database_url": state.database_url,
        "temporal_address": state.temporal_address,
        "temporal_namespace": settings.temporal_namespace,
        "task_queue": settings.task_queue,
        "implicit_head": state.implicit_head,
        "ray_auth_mode": state.ray_auth_mode,
        "ray_token_path": state.ray_token_path,
        "openbao": state.openbao or None,
        "database_pool_size": settings.database_pool_size,
        "lease_ttl_s": settings.lease_ttl_s,
    }


def deploy_control_plane(settings: Settings, state: UpState) -> None:
    """Deploy the packaged Serve config's application with this node's addresses filled in.

    One replica per orchestrator (`settings.orchestrators`, at most one per node): those whose
    orchestrator has not joined yet wait for it, so the call does not wait for them (the
    caller waits for /health instead). Proxies run on every node with a replica and on the
    head (proxy_location EveryNode): on orchestrators only, never on edges."""
    import logging

    from ray import serve
    from ray.serve.api import _run

    from aegis_ray.api.deployment import build_app

    # Serve narrates each step on the CLI's terminal; our own progress lines say enough.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    cfg = serve_config()
    http: dict[str, Any] = {"host": settings.api_host, "port": settings.api_port}
    if settings.tls_cert_file and settings.tls_key_file:
        http |= {
            "ssl_certfile": str(settings.tls_cert_file),
            "ssl_keyfile": str(settings.tls_key_file),
        }
    serve.start(
        http_options=http,
        grpc_options={
            "port": serve_grpc_port(settings),
            "grpc_servicer_functions": cfg["grpc_options"]["grpc_servicer_functions"],
        },
        proxy_location=cfg.get("proxy_location", "EveryNode"),
    )
    _run(
        build_app(control_plane_args(state, settings), replicas=settings.orchestrators),
        name=SERVE_APP,
        route_prefix="/",
        _blocking=False,
    )


def _check_tls(settings: Settings) -> None:
    """The NodeConfig's certificate, key and CA are usable: refused before anything starts."""
    from aegis_ray.adapters.tls import TlsConfigError, check_ca_file, server_context

    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return
    try:
        server_context(settings.tls_cert_file, settings.tls_key_file)
        if settings.ca_file:
            check_ca_file(settings.ca_file, field="spec.api.tls.ca_file")
    except TlsConfigError as err:
        raise ServiceConfigError(str(err)) from None
    if settings.grpc_port + 1 > 65535:
        raise ServiceConfigError(
            f"spec.api.grpc_port: {settings.grpc_port}: with TLS, Serve's "
            "gRPC proxy takes the next port, which does not exist"
        )


def serve_grpc_port(settings: Settings) -> int:
    """Where Serve's gRPC proxy listens: the gRPC port, or with TLS the port after it (the TLS
    front takes the gRPC port; adapters/tls.py)."""
    return settings.grpc_port + 1 if settings.tls_cert_file else settings.grpc_port


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _guard_grpc(settings: Settings, state: UpState, say: Say) -> None:
    """Serve's gRPC proxy listens on every address whatever the API's bind: keep it to
    loopback with an iptables rule when it sits behind the TLS front or when the API is bound
    to loopback; start the TLS front."""
    from aegis_ray.adapters import firewall

    port = serve_grpc_port(settings)
    if settings.tls_cert_file or _loopback(settings.api_host):
        try:
            firewall.install("INPUT", firewall.loopback_only_rule(port))
            if port not in state.loopback_ports:
                state.loopback_ports.append(port)
        except (firewall.FirewallError, OSError) as err:
            say(f"(gRPC port {port} stays reachable on every address: {err})")
    if settings.tls_cert_file and settings.tls_key_file and not read_pid(_front_pid(settings)):
        say(f"gRPC TLS on {settings.api_host}:{settings.grpc_port}")
        spawn_detached(
            [
                sys.executable, "-m", "aegis_ray.adapters.tls",
                "--listen", f"{settings.api_host}:{settings.grpc_port}", "--backend", str(port),
                "--cert", str(settings.tls_cert_file), "--key", str(settings.tls_key_file),
            ],
            log_path=settings.logs_dir / "grpc-tls.log",
            pid_path=_front_pid(settings),
        )  # fmt: skip
        state.started["grpc_tls"] = True
        wait_for_port(
            settings.api_host,
            settings.grpc_port,
            timeout=30,
            what="gRPC TLS front",
            log_path=settings.logs_dir / "grpc-tls.log",
        )


def _front_pid(settings: Settings) -> Path:
    return settings.home / "grpc-tls.pid"


def _unguard_grpc(settings: Settings, state: UpState, say: Say) -> None:
    from aegis_ray.adapters import firewall

    if state.started.get("grpc_tls"):
        say("gRPC TLS front")
        stop_pid(_front_pid(settings))
    for port in state.loopback_ports:
        try:
            firewall.remove("INPUT", firewall.loopback_only_rule(port))
        except (firewall.FirewallError, OSError) as err:
            say(f"(iptables rule for port {port} not removed: {err})")


def wait_healthy(api_url: str, *, timeout: float, ca_file: str | None = None) -> dict[str, Any]:
    import ssl

    deadline = time.monotonic() + timeout
    last = "no answer"
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{api_url}/health", timeout=5, verify=verify)
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
            last = r.text
        except httpx.HTTPError as err:
            last = str(err)
        time.sleep(0.5)
    raise TimeoutError(f"control plane at {api_url} not healthy after {timeout:.0f}s: {last}")


def _register_tokens(
    settings: Settings, database_url: str, join_secret: str | None, join_node_types: list[str]
) -> str:
    """Register the admin token (written 0600 under AEGIS_HOME the first time) and, with
    `ray up`, the pre-shared join secret (node ids of its node types, each once; revocable,
    `aegis token rotate-join-secret` replaces it); idempotent."""
    from aegis_ray.adapters.postgres.db import connect
    from aegis_ray.adapters.postgres.tokens import TokenStore

    path = settings.admin_token_path
    if path.exists():
        secret = path.read_text().strip()
    else:
        import secrets

        secret = "aegis_" + secrets.token_urlsafe(32)
        write_private(path, secret, replace=False)

    async def register() -> None:
        pool = await connect(database_url)
        try:
            tokens = TokenStore(pool)
            await tokens.ensure_admin(secret)
            if join_secret:
                await tokens.ensure(
                    join_secret,
                    role="join",
                    description="cluster join secret (aegis node start)",
                    node_types=join_node_types,
                )
        except ValueError as err:  # the join secret is known with another role
            raise RuntimeError(f"join secret not accepted: {err}") from err
        finally:
            await pool.close()

    asyncio.run(register())
    return secret


def down(settings: Settings, say: Say) -> list[str]:
    """Stop exactly what `up` started; returns what was stopped."""
    state = UpState.load(settings.state_path)
    if state is None:
        return []
    stopped: list[str] = []
    _unguard_grpc(settings, state, say)
    if state.started.get("prometheus"):
        say("Prometheus")
        prometheus(settings, state).stop()
        stopped.append("prometheus")
    if state.started.get("gcs_supervisor"):
        # First, so that it does not restart the GCS that stopping the head stops.
        say("GCS supervisor")
        _stop_gcs_supervisor(settings)
        stopped.append("gcs supervisor")
    if state.started.get("ray") and state.ray_session:
        say("Ray head")
        ray_head.stop_session(state.ray_session)
        stopped.append("ray")
    elif state.ray_address:
        say("control plane on the attached Ray cluster")
        try:
            _remove_control_plane(state)
            stopped.append("serve app")
        except Exception as err:  # the cluster may be gone already: nothing left to remove
            say(f"(control plane not removed: {err})")
    stopped += _drop_gcs_store(settings, state, say)
    if state.started.get("openbao"):
        say("OpenBao")
        openbao(settings).stop()
        stopped.append("openbao")
    if state.started.get("temporal"):
        say("Temporal dev server")
        temporal(settings).stop()
        stopped.append("temporal")
    if state.started.get("postgres"):
        say("PostgreSQL")
        postgres(settings).stop()
        stopped.append("postgres")
    _remove_agent_networks(say)
    settings.state_path.unlink(missing_ok=True)
    return stopped


def _remove_agent_networks(say: Say) -> None:
    """Agents' networks (and their iptables rules) no container uses any more: another node on
    this engine still running agents keeps its network."""
    import docker
    from docker.errors import DockerException

    from aegis_ray.adapters.docker.network import remove_unused_agent_networks

    try:
        removed = remove_unused_agent_networks(docker.from_env())
    except (DockerException, RuntimeError, OSError) as err:
        say(f"(agents' network not removed: {err})")
        return
    if removed:
        say("removed agents' network " + ", ".join(removed))


def _remove_control_plane(state: UpState) -> None:
    """What `aegis up` deployed onto a Ray cluster it did not start: the Serve app and the node
    agents (detached actors would outlive `aegis down` otherwise)."""
    import ray
    from ray import serve

    from aegis_ray.core.naming import RAY_NAMESPACE, node_agent_name

    ray_head.connect(state.ray_address, state.auth, purpose="aegis down")
    serve.delete(SERVE_APP)
    prefix = node_agent_name("")
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == RAY_NAMESPACE and actor["name"].startswith(prefix):
            ray.kill(ray.get_actor(actor["name"], namespace=RAY_NAMESPACE), no_restart=True)


# ---------------------------------------------------------------- GCS fault tolerance
# The head's state in Redis, and a supervisor that restarts a GCS that died (issue 14).


def redis(settings: Settings) -> EmbeddedRedis:
    """The embedded Redis that keeps the head's state (AEGIS_GCS_REDIS_PORT, default
    ray_port + 1; spec.gcs.bind, default loopback)."""
    return EmbeddedRedis(
        settings.home / "redis", port=settings.redis_port, bind=settings.gcs_redis_bind
    )


def gcs_supervisor_dir(settings: Settings) -> Path:
    """The supervisor's pidfile, log and record (record.json: the GCS pid now, each restart)."""
    return settings.home / "gcs-supervisor"


def _gcs_store_args(
    settings: Settings, state: UpState, store: GcsStore, say: Say
) -> ray_head.GcsStoreArgs | None:
    """Get the chosen store ready for a new head (start the embedded Redis); None: memory."""
    state.gcs_store = store.kind
    if store.kind == "memory":
        return None
    # A new head is a new cluster: a key prefix of its own, so it loads nothing of an earlier one.
    state.gcs_namespace = "aegis_" + secrets.token_hex(8)
    if store.kind == "embedded":
        server = redis(settings)
        state.started["redis"] = True  # recorded first: `down` stops a half-started one
        state.save(settings.state_path)
        if server.pid() is None:
            server.wipe()  # what an earlier head left: nothing will read it
        say(f"Redis for the Ray head's state ({server.address})")
        state.redis_address = server.start()
        password = server.password()
    else:
        state.redis_address = store.redis_address
        state.redis_password_file = str(settings.gcs_redis_password_file or "")
        password = store.password
    state.save(settings.state_path)
    return ray_head.GcsStoreArgs(
        redis_address=state.redis_address,
        password=password,
        namespace=state.gcs_namespace,
        reconnect_timeout_s=settings.gcs_reconnect_timeout_s,
    )


def _ensure_gcs_supervisor(settings: Settings, state: UpState, say: Say) -> None:
    """Start the GCS supervisor for a head we started with its state in Redis, unless it runs.
    (With the state in memory a restarted GCS would find an empty cluster: no supervisor.)"""
    if state.gcs_store == "memory" or not state.started.get("ray"):
        return
    from aegis_ray.adapters.ray.gcs_supervisor import Record

    folder = gcs_supervisor_dir(settings)
    pid_path, record_path = folder / "supervisor.pid", folder / "record.json"
    if read_pid(pid_path) is not None:
        return
    cmd = [
        sys.executable, "-m", "aegis_ray.adapters.ray.gcs_supervisor",
        "--gcs-port", str(settings.ray_port),
        "--ray-session", str(state.ray_session),
        "--record", str(record_path),
    ]  # fmt: skip
    if state.started.get("redis"):
        server = redis(settings)
        cmd += ["--redis-dir", str(server.data_dir), "--redis-port", str(server.port)]
        cmd += ["--redis-bind", server.bind]
    record_path.unlink(missing_ok=True)
    state.started["gcs_supervisor"] = True
    state.save(settings.state_path)
    say("GCS supervisor (restarts the Ray head's GCS should it die)")
    pid = spawn_detached(cmd, log_path=folder / "supervisor.log", pid_path=pid_path)
    deadline = time.monotonic() + 60
    while (record := Record.load(record_path)) is None or record.supervisor_pid != pid:
        if read_pid(pid_path) is None or time.monotonic() > deadline:
            raise RuntimeError(
                f"the GCS supervisor did not find the head's GCS; log {folder / 'supervisor.log'}"
            )
        time.sleep(0.2)


def _stop_gcs_supervisor(settings: Settings) -> None:
    stop_pid(gcs_supervisor_dir(settings) / "supervisor.pid")


def _drop_gcs_store(settings: Settings, state: UpState, say: Say) -> list[str]:
    """After the head stopped: a GCS the supervisor restarted (not in the head's session), and
    the head's state (the embedded Redis with its data, or this head's keys in an external one)."""
    from aegis_ray.adapters.ray.gcs_supervisor import Record

    stopped: list[str] = []
    record = Record.load(gcs_supervisor_dir(settings) / "record.json")
    if record is not None:
        # What is left of the supervisor's session: a GCS it restarted. A GCS may hang in its
        # SIGTERM shutdown once its raylets are gone: SIGKILL after a short grace.
        ray_head.stop_session(record.supervisor_pid, grace_s=2.0)
    if state.started.get("redis"):
        say("Redis (the Ray head's state)")
        server = redis(settings)
        server.stop()
        server.wipe()
        stopped.append("redis")
    elif state.gcs_store == "external" and state.gcs_namespace:
        say(f"this head's state in {state.redis_address}")
        try:
            _forget_external_state(state)
        except Exception as err:  # Redis unreachable: its keys stay, under their own prefix
            say(f"(keys {state.gcs_namespace}* not removed: {err})")
    return stopped


def _forget_external_state(state: UpState) -> None:
    from urllib.parse import urlsplit

    from ray._private.gcs_utils import cleanup_redis_storage  # private: Ray is pinned

    from aegis_ray.adapters.files import read_private

    address = state.redis_address
    tls = address.startswith("rediss://")
    host, _, port = (urlsplit(address).netloc if tls else address).rpartition(":")
    password = ""
    if state.redis_password_file:
        password = read_private(Path(state.redis_password_file), what="the Redis password file")
    cleanup_redis_storage(host, int(port), password, tls, state.gcs_namespace)


def _refuse_gcs_store_when_attaching(settings: Settings, node: NodeConfig | None) -> None:
    """Config accepted must be used: attached to a head started elsewhere, aegis starts no GCS,
    so a GCS store chosen here would do nothing."""
    chosen = sorted(f for f in settings.model_fields_set if f.startswith("gcs_redis_"))
    if "gcs_store" in settings.model_fields_set:
        chosen.insert(0, "gcs_store")
    if chosen or (node is not None and node.spec.gcs is not None):
        names = ", ".join(f"AEGIS_{f.upper()}" for f in chosen) or "spec.gcs"
        raise ServiceConfigError(
            f"{names}: aegis attaches to a Ray head started elsewhere, whose state is kept where "
            "that head was told (RAY_REDIS_ADDRESS when it started); remove it"
        )


# ---------------------------------------------------------------- edge nodes


@dataclass
class EdgeState:
    node_id: str
    api_url: str
    ray_address: str
    ray_session: int
    ray_auth_mode: str

    @staticmethod
    def path(settings: Settings, node_id: str) -> Path:
        return settings.home / "nodes" / f"{node_id}.json"

    def save(self, settings: Settings) -> None:
        p = self.path(settings, self.node_id)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, settings: Settings, node_id: str) -> EdgeState | None:
        p = cls.path(settings, node_id)
        return cls(**json.loads(p.read_text())) if p.exists() else None


class JoinRefused(RuntimeError):
    pass


def credential_path(settings: Settings, node_id: str) -> Path:
    """Where an edge keeps its own node credential (0600): what it re-registers with."""
    return settings.home / "nodes" / node_id / "credential"


def join_edge(
    settings: Settings, node: NodeConfig, join_token: str | None, say: Say, *, ray_args: list[str]
) -> EdgeState:
    """Register with the orchestrator, then start a raylet that joins its Ray cluster.

    The first time, with a join token for this node (used once): the orchestrator answers with
    the node's own credential (kept 0600 under AEGIS_HOME/nodes/<id>/), the Ray address and,
    in token mode, the Ray token this raylet needs. Later registrations use the credential
    (and ask for the Ray token only if it was lost). A node without either learns nothing.
    An orchestrator joins the same way (a second or third one): its raylet carries the
    orchestrator resource, so Serve places one API replica (with its Temporal worker) and a
    proxy on it; what that replica connects to is the first orchestrator's deployment's, so
    the joining NodeConfig may not name services or API ports of its own.
    """
    node_id = node.spec.node.id
    private_umask()
    make_private_home(settings.home, HOME_ENTRIES)
    kind = node.spec.node.type.value
    existing = EdgeState.load(settings, node_id)
    if existing and ray_head.session_pids(existing.ray_session):
        say(f"{kind} {node_id} already running")
        return existing
    if node.spec.runtime.orchestrator_url is None:
        raise ServiceConfigError(
            f"spec.runtime.orchestrator_url: required to join ({kind} {node_id}): the API of a "
            "running orchestrator (or the load balancer), like http://orchestrator-1:8080"
        )
    if kind == "orchestrator":
        _check_joining_orchestrator(node)
    tls = ray_tls(settings, node)
    api_url = str(node.spec.runtime.orchestrator_url).rstrip("/")
    cred_file = credential_path(settings, node_id)
    token_path = settings.home / "nodes" / node_id / "ray_auth_token"
    credential = cred_file.read_text().strip() if cred_file.exists() else None
    if not (credential or join_token):
        raise JoinRefused(
            f"node {node_id} has no credential ({cred_file}) yet: give a join token for it"
        )
    say(f"registering {node_id} with {api_url}")
    node_ca = node.spec.runtime.orchestrator_ca_file
    ca_file = settings.ca_file or (Path(node_ca) if node_ca else None)
    try:
        joined = _register(
            api_url,
            credential or join_token or "",
            node,
            wait_s=settings.register_wait_s,
            has_ray_token=credential is not None and token_path.exists(),
            ca_file=ca_file,
        )
    except JoinRefused:
        if not (credential and join_token):
            raise
        say("the node credential was refused (revoked?): registering with the join token")
        joined = _register(
            api_url,
            join_token,
            node,
            wait_s=settings.register_wait_s,
            has_ray_token=False,
            ca_file=ca_file,
        )
    if joined.get("credential"):
        write_private(cred_file, joined["credential"])
    ray_info = joined["ray"]
    auth = ray_head.RayAuth("disabled", tls=tls)
    if ray_info.get("auth_mode") == "token":
        if ray_info.get("token"):
            write_private(token_path, ray_info["token"])
        elif not token_path.exists():
            raise JoinRefused("the orchestrator runs Ray in token mode but handed out no token")
        auth = ray_head.RayAuth("token", str(token_path), tls)
    say(f"Ray worker node joining {ray_info['address']}")

    def record(session: int) -> None:
        # Before the raylet is up: stopped now, `aegis node stop` still knows what to stop.
        EdgeState(node_id, api_url, ray_info["address"], session, auth.mode).save(settings)

    session = ray_head.start_worker(
        ray_start_args(node),
        address=ray_info["address"],
        auth=auth,
        extra_args=ray_args,
        log_path=settings.logs_dir / f"ray-{node_id}.log",
        started=record,
        gcs_reconnect_timeout_s=settings.gcs_reconnect_timeout_s,
    )
    state = EdgeState(node_id, api_url, ray_info["address"], session, auth.mode)
    state.save(settings)
    return state


def _check_joining_orchestrator(node: NodeConfig) -> None:
    """A joining orchestrator serves the first one's deployment: config of its own for the
    services or the API would be silently ignored, so it is refused."""
    from aegis_ray.core.models.node import ApiSection

    spec = node.spec
    why = "set on the first orchestrator (its Serve deployment is the one every orchestrator runs)"
    for key, value in (
        ("spec.database", spec.database),
        ("spec.temporal", spec.temporal),
        ("spec.secrets", spec.secrets),
    ):
        if value is not None:
            raise ServiceConfigError(
                f"{key}: {why}; remove it from a joining orchestrator's config"
            )
    if spec.api != ApiSection():
        raise ServiceConfigError(
            f"spec.api: {why}; remove it from a joining orchestrator's config"
        )


def _register(
    api_url: str,
    join_token: str,
    node: NodeConfig,
    *,
    wait_s: float,
    has_ray_token: bool,
    ca_file: Path | None,
) -> dict[str, Any]:
    """Register with the orchestrator, waiting up to `wait_s` while it is unreachable or
    unavailable (5xx; `ray up` starts edges and their orchestrator at once); a refusal (4xx)
    is final. An https orchestrator's certificate is checked against `ca_file` (AEGIS_CA_FILE)
    or the system's CAs."""
    import socket
    import ssl

    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
    )

    body = {
        "node": node.spec.node.model_dump(mode="json"),
        "address": socket.gethostname(),
        "version": aegis_ray.__version__,
        "has_ray_token": has_ray_token,
    }
    deadline = time.monotonic() + wait_s
    while True:
        try:
            r = httpx.post(
                f"{api_url}/v1/nodes/register",
                json=body,
                headers={"Authorization": f"Bearer {join_token}"},
                timeout=30,
                verify=verify,
            )
            if r.status_code < 500 or time.monotonic() >= deadline:
                break
        except httpx.HTTPError as err:
            if time.monotonic() >= deadline:
                raise JoinRefused(f"orchestrator at {api_url} not reachable: {err}") from err
        time.sleep(3)
    if r.status_code != 200:
        try:
            message = r.json().get("message", r.text)
        except ValueError:
            message = r.text
        raise JoinRefused(f"orchestrator refused the join (HTTP {r.status_code}): {message}")
    data: dict[str, Any] = r.json()
    return data


def stop_edge(settings: Settings, node_id: str) -> bool:
    state = EdgeState.load(settings, node_id)
    if state is None:
        return False
    ray_head.stop_session(state.ray_session)
    _remove_agent_networks(lambda _: None)
    EdgeState.path(settings, node_id).unlink(missing_ok=True)
    return True
