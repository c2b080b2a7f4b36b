"""The NodeConfig (`kind: NodeConfig`): one machine's role, resources, tags and services."""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from aegis_ray.core.models.base import (
    DnsLabel,
    StrictInt,
    StrictModel,
    bounded,
    field_error,
    field_errors,
    unique,
)
from aegis_ray.core.models.tags import validate_tag
from aegis_ray.core.naming import TASK_QUEUE


class NodeType(StrEnum):
    """A node's role: orchestrators host the control plane, edges run agent containers."""

    ORCHESTRATOR = "orchestrator"
    EDGE = "edge"
    HYBRID = "hybrid"  # both


EXECUTING_ROLES = frozenset({NodeType.EDGE, NodeType.HYBRID})
ORCHESTRATING_ROLES = frozenset({NodeType.ORCHESTRATOR, NodeType.HYBRID})


def role_of(value: str | None, default: NodeType) -> NodeType:
    """The role a Ray label or a registry row names, or `default` where it names none."""
    if value is None or value not in NodeType._value2member_map_:
        return default
    return NodeType(value)


class NodeStatus(StrEnum):
    """Where a node stands for placement: the registry merged with Ray's live node table."""

    READY = "ready"  # alive in Ray and not drained
    DRAINING = "draining"  # alive, drained by an operator: keeps its running work, gets no new
    DOWN = "down"  # registered, but Ray has no live node for it (lost, or stopped)
    GONE = "gone"  # down for longer than the registry's GONE_AFTER_S; kept for history


# The cluster document calls them controller / worker; the deployment document orchestrator / edge.
NODE_TYPE_ALIASES = {"controller": NodeType.ORCHESTRATOR, "worker": NodeType.EDGE}


def _node_type(value: Any) -> Any:
    if isinstance(value, str):
        key = value.strip().lower()
        if key in NODE_TYPE_ALIASES:
            return NODE_TYPE_ALIASES[key]
        if key in NodeType._value2member_map_:
            return NodeType(key)
        raise ValueError(
            f"{value!r} is not a node type (accepted: orchestrator, edge, hybrid; "
            "aliases: controller, worker)"
        )
    return value


def _gpu_count(value: Any) -> Any:
    # The deployment document declares `gpu: true`; a count is more useful to Ray.
    if isinstance(value, bool):
        return int(value)
    return value


def _name_check(pattern: str, what: str, allowed: str) -> Callable[[str], str]:
    """A validator accepting 1-63 characters of `pattern`, naming `what` and `allowed` if not."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(
                f"{value!r} is not {what} (1-63 {allowed}, starting and ending with a letter "
                "or digit)"
            )
        return value

    return check


_check_node_id = _name_check(
    r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?", "a node id", "lowercase letters, digits, '-' or '.'"
)
# Region becomes a Ray label value: Kubernetes label syntax.
_LABEL_VALUE = r"[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?"
_check_region = _name_check(_LABEL_VALUE, "a region", "letters, digits, '-', '_' or '.'")


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL like https://orchestrator:8080")
    return value


HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
Port = Annotated[StrictInt, bounded(1, 65535)]


class NodeResources(StrictModel):
    cpu_cores: Annotated[StrictInt, bounded(0, 4096)]
    memory_gb: Annotated[StrictInt, bounded(0, 65536)]
    disk_gb: Annotated[StrictInt, bounded(0, 10_000_000)] = 0
    gpu: Annotated[StrictInt, BeforeValidator(_gpu_count), bounded(0, 64)] = 0


# Every tag is a Ray resource of the node: a bound keeps a registration's size bounded too.
MAX_NODE_TAGS = 256


class NodeSection(StrictModel):
    id: Annotated[str, AfterValidator(_check_node_id)]
    type: Annotated[NodeType, BeforeValidator(_node_type)]
    region: Annotated[str, AfterValidator(_check_region)] = "local"
    tags: Annotated[list[Annotated[str, AfterValidator(validate_tag)]], AfterValidator(unique)] = (
        Field(default_factory=list, max_length=MAX_NODE_TAGS)
    )
    resources: NodeResources | None = None


# aegis's own bridge, which it keeps from reaching this host's services
# (adapters/docker/network.py); "bridge" (Docker's default) would let agents reach them.
DEFAULT_DOCKER_NETWORK = "aegis-agents"


def _check_docker_network(value: str) -> str:
    # The network an agent with `network.mode: allow` joins on this node. Handing it the host's
    # or another container's network namespace, or none at all, would silently change what the
    # manifest asked for. The name also travels as a Ray label value.
    if value in ("host", "none") or value.startswith("container:"):
        raise ValueError(
            f"{value!r} cannot carry agents' network: give 'bridge' or the name of a Docker "
            "network on this node"
        )
    return _check_network_name(value)


_check_network_name = _name_check(
    _LABEL_VALUE, "a Docker network name", "letters, digits, '_', '.' or '-'"
)


class NodeRuntime(StrictModel):
    orchestrator_url: HttpUrl | None = None
    # Edges: the CA an https orchestrator_url's certificate is checked against (AEGIS_CA_FILE
    # wins); none: the system's CAs.
    orchestrator_ca_file: Annotated[str, Field(min_length=1)] | None = None
    # Where agents whose manifest allows network go on this node (see ray_mapping).
    docker_network_mode: Annotated[str, AfterValidator(_check_docker_network)] = (
        DEFAULT_DOCKER_NETWORK
    )
    nfs_server_host: str | None = None
    # 1000 at most: each tagged execution takes 0.001 of a tag resource worth 1 (cluster.resources).
    max_containers: Annotated[StrictInt, bounded(1, 1000)] = 32


class LlmProvider(StrictModel):
    name: str
    type: str
    endpoint: str | None = None
    model: str | None = None
    api_key_secret: str | None = None  # a path in the secrets store, never the key itself


class StorageSection(StrictModel):
    backend: Literal["seaweedfs", "local"]
    filer_url: HttpUrl | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _backend_needs_location(self) -> StorageSection:
        if self.backend == "seaweedfs" and self.filer_url is None:
            raise field_error("filer_url", "required for the seaweedfs backend", None)
        if self.backend == "local" and self.path is None:
            raise field_error("path", "required for the local backend", None)
        return self


class DatabaseSection(StrictModel):
    url: str
    # Connections each orchestrator's control plane may hold (orchestrators x pool_size must
    # stay under the server's max_connections).
    pool_size: Annotated[StrictInt, bounded(2, 200)] = 10


class TemporalSection(StrictModel):
    address: str
    namespace: str = "default"
    task_queue: str = TASK_QUEUE


_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _check_env_var(value: str) -> str:
    if not _ENV_VAR.fullmatch(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def _check_absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute file path")
    return value


def _check_mount(value: str) -> str:
    if not _MOUNT.fullmatch(value):
        raise ValueError(f"{value!r} is not an OpenBao mount path like 'secret' or 'approle'")
    return value


Mount = Annotated[str, AfterValidator(_check_mount)]


class AppRoleSection(StrictModel):
    """How the control plane logs in to an external OpenBao. The secret id is never written
    here (a NodeConfig is copied from machine to machine): it is in an environment variable
    or in a file only the aegis user can read (mode 0600)."""

    role_id: Annotated[str, Field(min_length=1)]
    secret_id_env: Annotated[str, AfterValidator(_check_env_var)] | None = None
    secret_id_file: Annotated[str, AfterValidator(_check_absolute)] | None = None
    mount: Mount = "approle"

    @model_validator(mode="after")
    def _one_secret_id(self) -> AppRoleSection:
        if (self.secret_id_env is None) == (self.secret_id_file is None):
            why = "give exactly one of secret_id_env (a variable name) and secret_id_file"
            raise field_error("secret_id_env", why, None)
        return self


class SecretsSection(StrictModel):
    """An external OpenBao (the default is an embedded one that `aegis up` starts)."""

    backend: Literal["openbao"] = "openbao"
    address: HttpUrl
    mount: Mount = Field("secret", description="the KV version 2 secrets engine")
    approle: AppRoleSection
    # The CA certificate (PEM) that signed the server's certificate, for an https address.
    ca_file: Annotated[str, AfterValidator(_check_absolute)] | None = None

    @model_validator(mode="after")
    def _ca_needs_https(self) -> SecretsSection:
        if self.ca_file is not None and not self.address.startswith("https://"):
            raise field_error("ca_file", "only used with an https:// address", self.ca_file)
        return self


class TlsSection(StrictModel):
    """TLS of this orchestrator's REST and gRPC APIs: PEM files read when the node starts."""

    cert_file: Annotated[str, Field(min_length=1)]  # the certificate (and its chain)
    key_file: Annotated[str, Field(min_length=1)]  # its private key: mode 0600
    # The CA clients on this machine verify the API with (`aegis up` records it for the CLI);
    # default: cert_file itself (a self-signed certificate).
    ca_file: Annotated[str, Field(min_length=1)] | None = None


class RayTlsSection(StrictModel):
    """Ray's own mutual TLS on every gRPC channel between its processes (RAY_USE_TLS): PEM files
    of this node, checked when the node starts. Every node of the cluster needs it (a certificate
    the same CA signed), or none."""

    cert_file: Annotated[str, Field(min_length=1)]  # this node's certificate: server and client
    key_file: Annotated[str, Field(min_length=1)]  # its private key: mode 0600
    ca_file: Annotated[str, Field(min_length=1)]  # the CA all Ray peers' certificates chain to


class GcsSection(StrictModel):
    """Where the Ray head keeps its cluster state (GCS fault tolerance).

    ``redis`` (the default): in Redis, so that a restarted GCS finds the cluster as it was;
    an embedded Redis under AEGIS_HOME unless ``redis_url`` names an external one.
    ``memory``: Ray's own default, state lost with the GCS process (no supervisor either).
    """

    store: Literal["redis", "memory"] = "redis"
    redis_url: str | None = None  # redis://host:port or rediss://host:port, no password
    redis_password_file: str | None = None  # the external Redis's password, a 0600 file
    bind: str = "127.0.0.1"  # the embedded Redis's listen address


class ApiSection(StrictModel):
    bind: str = "127.0.0.1"
    rest_port: Port = 8080
    grpc_port: Port = 50051
    tls: TlsSection | None = None
    # How many orchestrators serve the API (the first one's config says; one replica each).
    orchestrators: Annotated[StrictInt, bounded(1, 3)] = 1


class NodeSpec(StrictModel):
    node: NodeSection
    runtime: NodeRuntime = Field(default_factory=NodeRuntime)
    llm_providers: list[LlmProvider] = Field(default_factory=list)
    storage: StorageSection | None = None
    database: DatabaseSection | None = None
    temporal: TemporalSection | None = None
    secrets: SecretsSection | None = None
    ray_tls: RayTlsSection | None = None
    gcs: GcsSection | None = None
    api: ApiSection = Field(default_factory=ApiSection)

    @model_validator(mode="after")
    def _role_needs(self) -> NodeSpec:
        node = self.node
        problems: list[tuple[str, str, Any]] = []
        if node.type in EXECUTING_ROLES:
            res = node.resources
            if res is None:
                why = f"required for {node.type} nodes (cpu_cores and memory_gb at least 1)"
                problems.append(("node.resources", why, None))
            elif res.cpu_cores < 1 or res.memory_gb < 1:
                why = f"{node.type} nodes need cpu_cores >= 1 and memory_gb >= 1"
                problems.append(("node.resources", why, res.model_dump()))
        if node.type == NodeType.EDGE and self.runtime.orchestrator_url is None:
            why = "required for edge nodes (where to call back)"
            problems.append(("runtime.orchestrator_url", why, None))
        if problems:
            raise field_errors(problems)
        return self

    @model_validator(mode="after")
    def _only_used_keys(self) -> NodeSpec:
        # Runs after _role_needs, whose problems are reported first (and alone).
        if problems := _service_problems(self):
            raise field_errors(problems)
        return self


# Keys the schema accepts (the deployment document has them) that no code reads yet. Config that
# is accepted is used, so each is refused, with why, until its step wires it.
NOT_WIRED_YET = {
    "llm_providers": "not wired yet: aegis-ray passes no LLM providers to agents",
    "storage": "not wired yet: execution storage (SeaweedFS) arrives with its own step",
    "runtime.nfs_server_host": "not wired yet: NFS volume mounts are a later step",
}
# Read by the head (its control plane, its Ray state store), which edges do not run.
HEAD_ONLY = ("database", "temporal", "secrets", "gcs")
_HOST_PORT = re.compile(r"(\[[^]]+\]|[^:/\s]+):\d{1,5}")


def _dig(model: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        model = getattr(model, key)
    return model


def _service_problems(spec: NodeSpec) -> list[tuple[str, str, Any]]:
    """Keys no code reads, and the service sections' own rules (see NodeSpec._only_used_keys)."""
    problems: list[tuple[str, str, Any]] = [
        (key, f"{why}; remove it", None)
        for key, why in NOT_WIRED_YET.items()
        if _dig(spec, key) not in (None, [])
    ]
    if spec.node.type == NodeType.EDGE:
        why = "an edge node runs no control plane, so it uses none (orchestrator and hybrid do)"
        problems += [(k, f"{why}; remove it", None) for k in HEAD_ONLY if _dig(spec, k) is not None]
    if spec.database is not None:
        url = urlsplit(spec.database.url)
        if url.scheme not in ("postgresql", "postgres"):
            why = "not a PostgreSQL URL like postgresql://aegis@db.internal:5432/aegis"
            problems.append(("database.url", why, spec.database.url))
        elif url.password is not None:
            why = (
                "holds a password; a NodeConfig is copied from machine to machine, so give the "
                "password in AEGIS_DATABASE_PASSWORD or AEGIS_DATABASE_PASSWORD_FILE (mode 0600)"
            )
            problems.append(("database.url", why, None))  # not echoed back
    if spec.temporal is not None and not _HOST_PORT.fullmatch(spec.temporal.address):
        why = "not a Temporal frontend address HOST:PORT like temporal.internal:7233"
        problems.append(("temporal.address", why, spec.temporal.address))
    if spec.gcs is not None:
        problems += gcs_problems(spec.gcs)
    return problems


def gcs_problems(gcs: GcsSection) -> list[tuple[str, str, Any]]:
    unused = [k for k in ("redis_url", "redis_password_file") if getattr(gcs, k) is not None]
    if "bind" in gcs.model_fields_set:
        unused.append("bind")
    if gcs.store == "memory":
        why = "store: memory keeps the state in the GCS process and uses no Redis; remove it"
        return [(f"gcs.{k}", why, None) for k in unused]
    if gcs.redis_url is None:
        why = "only an external Redis (gcs.redis_url) takes a password file; remove it"
        return [("gcs.redis_password_file", why, None)] if gcs.redis_password_file else []
    problems: list[tuple[str, str, Any]] = []
    url = urlsplit(gcs.redis_url)
    shown = None if "@" in url.netloc else gcs.redis_url  # never echo a password back
    if url.scheme not in ("redis", "rediss") or not _HOST_PORT.fullmatch(url.netloc):
        why = "not a Redis address like redis://redis.internal:6379 (rediss:// for TLS)"
        problems.append(("gcs.redis_url", why, shown))
    elif url.path not in ("", "/"):
        why = "Ray keeps its state in database 0: remove the path"
        problems.append(("gcs.redis_url", why, shown))
    if "bind" in unused:
        why = "the listen address of the embedded Redis; with gcs.redis_url none is started"
        problems.append(("gcs.bind", f"{why}; remove it", None))
    return problems


class NodeMetadata(StrictModel):
    name: DnsLabel


class NodeConfig(StrictModel):
    api_version: Literal["100monkeys.ai/v1"] = Field(alias="apiVersion")
    kind: Literal["NodeConfig"]
    metadata: NodeMetadata
    spec: NodeSpec

    def to_document(self) -> dict[str, Any]:
        """The config as a YAML/JSON document (aliases, canonical node type)."""
        return self.model_dump(mode="json", by_alias=True)
