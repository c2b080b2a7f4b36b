"""aegis's checks on a cluster YAML that Ray's launcher accepted.

Cloud providers: each node type runs the NodeConfig of its own name, shipped to NODES_DIR, and
carries the resources and labels `aegis node start` gives Ray for it. The on-prem `local`
provider has one node type and no per-type resources: each host runs the NodeConfig named after
its address, shipped to HOSTS_DIR. For both: the start commands, the head's ports and the join
secret.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aegis_ray.cluster_config.names import label_problem, resource_name_problem
from aegis_ray.cluster_config.node_types import node_type_labels, node_type_resources
from aegis_ray.cluster_config.results import ClusterProblem, ClusterSummary, NodeRole
from aegis_ray.core.models.loading import ManifestError, load_file
from aegis_ray.core.models.node import NodeConfig, NodeType
from aegis_ray.core.naming import EXECUTOR, LABEL_NODE_ID

# Where the cluster YAMLs ship files to (file_mounts targets) and what their commands use.
NODES_DIR = "~/aegis/nodes"  # one NodeConfig per node type, named after the type
HOSTS_DIR = "~/aegis/hosts"  # on-prem: one NodeConfig per host, named after its address
SELECTED_CONFIG = "~/aegis/node.yaml"  # a worker's own NodeConfig, linked by its type's commands
JOIN_SECRET = "~/aegis/cluster-join-secret"  # pre-shared join secret (`aegis cluster secret`)

# The deployment document's networking table: edges and clients reach the orchestrator here.
DEPLOYMENT_PORTS = {8080: "REST API", 50051: "gRPC API"}
REST_PORT, GRPC_PORT = 8080, 50051
# Ray's own ports (GCS, dashboard, client server, and the default worker port range): whoever
# reaches them with the Ray token runs code on every node, so only cluster nodes may.
RAY_PORTS = {6379: "Ray GCS", 8265: "Ray dashboard", 10001: "Ray client server"}
RAY_WORKER_PORTS = (10002, 19999)
_ANYWHERE = ("0.0.0.0/0", "::/0")

_ORCH_URL = re.compile(r"--orchestrator-url[= ](\S+)")
_ORCH_URL_PORT = re.compile(r"--orchestrator-url[= ]\S*?:(?:\$\{\w+:-)?(\d+)")


class CrossCheck:
    """aegis's checks on a cluster YAML that Ray's launcher accepted."""

    def __init__(
        self, doc: dict[str, Any], prepared: dict[str, Any], source: str, base_dir: Path
    ) -> None:
        self.doc, self.prepared, self.base_dir = doc, prepared, base_dir
        self.provider = str(prepared["provider"]["type"])
        self.summary = ClusterSummary(source, self.provider)
        self.problems: list[ClusterProblem] = []
        self.workers: list[tuple[str, NodeConfig]] = []  # (where, NodeConfig) of worker nodes
        self.mounts = {
            remote: self._local(str(local))
            for remote, local in (doc.get("file_mounts") or {}).items()
        }
        self.head_start = self._commands("head_start_ray_commands")
        self.worker_start = self._commands("worker_start_ray_commands")

    def fail(self, where: str, key: str, message: str) -> None:
        self.problems.append(ClusterProblem(where, key, message))

    def run(self) -> None:
        head = self._hosts() if self.provider == "local" else self._node_types()
        self._start_commands()
        if head is not None:
            self._ports(head)
            self._orchestrators(head)
            self._ray_tls(head)
        self._join_secret()

    # -- helpers

    def _local(self, local: str) -> Path:
        path = Path(os.path.expanduser(local))
        return path if path.is_absolute() else self.base_dir / path

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.base_dir))
        except ValueError:
            return str(path)

    def _commands(self, key: str) -> list[str]:
        return [c for c in self.doc.get(key) or [] if isinstance(c, str)]

    def _load(self, where: str, path: Path) -> NodeConfig | None:
        try:
            doc = load_file(path)
        except ManifestError as err:
            for p in err.problems:
                self.fail(where, "", p.render(self._shown(path)))
            return None
        if not isinstance(doc, NodeConfig):
            self.fail(
                where, "", f"{self._shown(path)}: kind: expected NodeConfig (got {doc.kind!r})"
            )
            return None
        return doc

    def _mounted_dir(self, remote: str, example: str) -> Path | None:
        local = self.mounts.get(remote)
        if local is None:
            self.fail(
                "",
                "file_mounts",
                f'must ship the NodeConfig files to {remote}, e.g. "{remote}": "{example}"',
            )
            return None
        if not local.is_dir():
            self.fail(
                "",
                f"file_mounts.{remote}",
                f"local directory {self._shown(local)} not found (relative paths are resolved "
                "against the directory `ray up` runs in)",
            )
            return None
        return local

    # -- cloud providers: one NodeConfig per node type

    def _node_types(self) -> NodeConfig | None:
        nodes_dir = self._mounted_dir(NODES_DIR, "cluster_configs/nodes")
        head_type = self.prepared["head_node_type"]
        head: NodeConfig | None = None
        for name, spec in self.prepared["available_node_types"].items():
            where = f"node type {name}"
            is_head = name == head_type
            raw = self.doc["available_node_types"][name]
            cfg = self._node_type_config(where, name, nodes_dir) if nodes_dir else None
            role = str(cfg.spec.node.type) if cfg else "?"
            if cfg is not None and nodes_dir is not None:
                self._role(where, cfg, is_head)
                shown = self._shown(nodes_dir / f"{name}.yaml")
                self._resources(where, raw.get("resources") or {}, cfg, shown)
                self._labels(where, raw.get("labels") or {}, cfg)
                if is_head:
                    head = cfg
                else:
                    self.workers.append((where, cfg))
            else:
                self._label_syntax(where, raw.get("labels") or {})
            if not is_head:
                self._selects_own_config(where, name, raw)
                if spec.get("max_workers", 0) > 1 and not self._unique_ids():
                    self.fail(
                        where,
                        "",
                        f"up to {spec['max_workers']} instances would share one node id: "
                        "pass --node-id '{id}-{host}' to every `aegis node start` and "
                        "`aegis node stop` in worker_start_ray_commands",
                    )
            self.summary.nodes.append(
                NodeRole(
                    name,
                    role,
                    self._shown(nodes_dir / f"{name}.yaml") if nodes_dir else "",
                    is_head,
                    int(spec.get("min_workers", 0)),
                    int(spec.get("max_workers", 0)),
                )
            )
        if not any(f"{NODES_DIR}/{head_type}.yaml" in c for c in self.head_start):
            self.fail(
                "",
                "head_start_ray_commands",
                f"must start the head's NodeConfig: aegis node start --config "
                f"{NODES_DIR}/{head_type}.yaml",
            )
        if not any(f"--config {SELECTED_CONFIG}" in c for c in self.worker_start):
            self.fail(
                "",
                "worker_start_ray_commands",
                f"must start the NodeConfig the node type selected: aegis node start --config "
                f"{SELECTED_CONFIG}",
            )
        return head

    def _node_type_config(self, where: str, name: str, nodes_dir: Path) -> NodeConfig | None:
        path = nodes_dir / f"{name}.yaml"
        if not path.exists():
            self.fail(
                where,
                "",
                f"no NodeConfig {self._shown(path)}: each node type runs the NodeConfig of its "
                f"name from {NODES_DIR}",
            )
            return None
        return self._load(where, path)

    def _role(self, where: str, cfg: NodeConfig, is_head: bool) -> None:
        role = cfg.spec.node.type
        if is_head and role == NodeType.EDGE:
            self.fail(
                where,
                "",
                "the head node type must run an orchestrator or hybrid NodeConfig (got edge)",
            )
        if not is_head and role == NodeType.HYBRID:
            self.fail(
                where,
                "",
                f"a worker node type must run an edge or orchestrator NodeConfig (got {role}): "
                f"`aegis node start` on a {role} starts a second Ray head",
            )

    def _resources(self, where: str, declared: dict[str, Any], cfg: NodeConfig, shown: str) -> None:
        expected = node_type_resources(cfg)
        skip = set()
        if cfg.spec.node.type == NodeType.ORCHESTRATOR and EXECUTOR in declared:
            self.fail(
                where,
                f"resources.{EXECUTOR}",
                "an orchestrator runs no agent containers: it must not carry the executor resource",
            )
            skip.add(EXECUTOR)
        for name in declared:
            why = resource_name_problem(str(name))
            if why:
                self.fail(where, f"resources.{name}", why)
                skip.add(name)
        have = {k: v for k, v in declared.items() if v and k not in skip}
        want = {k: v for k, v in expected.items() if v}
        for name in sorted(set(have) | set(want)):
            if name in skip or have.get(name) == want.get(name):
                continue
            if name not in have:
                message = f"missing: `aegis node start` gives {name}={want[name]} for {shown}"
            elif name not in want:
                message = f"`aegis node start` gives no {name} for {shown}: remove it"
            else:
                message = f"{have[name]}, but `aegis node start` gives {want[name]} for {shown}"
            self.fail(where, f"resources.{name}", message)

    def _label_syntax(self, where: str, declared: dict[str, Any]) -> set[str]:
        bad = set()
        for key, value in declared.items():
            why = label_problem(str(key), value)
            if why:
                self.fail(where, f"labels.{key}", why)
                bad.add(key)
        return bad

    def _labels(self, where: str, declared: dict[str, Any], cfg: NodeConfig) -> None:
        bad = self._label_syntax(where, declared)
        if LABEL_NODE_ID in declared:
            self.fail(
                where,
                f"labels.{LABEL_NODE_ID}",
                "must not be set: the launcher would give every instance of the type this id; "
                "`aegis node start` sets each instance's own",
            )
            bad.add(LABEL_NODE_ID)
        want = node_type_labels(cfg)
        for key in sorted(set(declared) | set(want)):
            if key in bad or declared.get(key) == want.get(key):
                continue
            if key not in declared:
                message = f"missing: `aegis node start` gives {key}={want[key]}"
            elif key not in want:
                message = "`aegis node start` gives no such label: remove it"
            else:
                message = f"{declared[key]!r}, but `aegis node start` gives {want[key]!r}"
            self.fail(where, f"labels.{key}", message)

    def _selects_own_config(self, where: str, name: str, raw: dict[str, Any]) -> None:
        own = f"{NODES_DIR}/{name}.yaml"
        commands = [c for c in raw.get("initialization_commands") or [] if isinstance(c, str)]
        text = "\n".join(commands)
        others = set(re.findall(re.escape(NODES_DIR) + r"/([\w.-]+)\.yaml", text)) - {name}
        if own not in text or SELECTED_CONFIG not in text:
            self.fail(
                where,
                "initialization_commands",
                f"must select this type's NodeConfig for the shared worker start commands: "
                f"ln -sfn {own} {SELECTED_CONFIG}",
            )
        elif others:
            self.fail(
                where,
                "initialization_commands",
                f"selects another type's NodeConfig ({', '.join(sorted(others))}); "
                f"node type {name} runs {own}",
            )

    def _unique_ids(self) -> bool:
        """Every `aegis node start/stop` of the workers names its instance ({host})."""
        calls = [c for c in self.worker_start if "aegis node st" in c]
        return bool(calls) and all("--node-id" in c and "{host}" in c for c in calls)

    # -- on-prem: one NodeConfig per host

    def _hosts(self) -> NodeConfig | None:
        provider = self.prepared["provider"]
        if "head_ip" not in provider or "worker_ips" not in provider:
            self.fail(
                "",
                "provider",
                "aegis needs head_ip and worker_ips: each host runs the NodeConfig named after "
                "its address",
            )
            return None
        hosts_dir = self._mounted_dir(HOSTS_DIR, "cluster_configs/onprem-hosts")
        head: NodeConfig | None = None
        seen: dict[str, str] = {}
        for address in [provider["head_ip"], *provider["worker_ips"]]:
            is_head = address == provider["head_ip"]
            where = f"host {address}"
            if not _is_ip(str(address)):
                self.fail(
                    where,
                    "",
                    f"must be an IP address: a host runs {HOSTS_DIR}/<address>.yaml, the "
                    "address the launcher reaches it at",
                )
                continue
            if hosts_dir is None:
                continue
            path = hosts_dir / f"{address}.yaml"
            if not path.exists():
                self.fail(where, "", f"no NodeConfig {self._shown(path)}")
                continue
            cfg = self._load(where, path)
            if cfg is None:
                continue
            self._role(where, cfg, is_head)
            node_id = cfg.spec.node.id
            if node_id in seen:
                self.fail(where, "", f"node id {node_id!r} is also host {seen[node_id]}'s")
            seen[node_id] = address
            if is_head:
                head = cfg
            else:
                self.workers.append((where, cfg))
            self.summary.nodes.append(
                NodeRole(address, str(cfg.spec.node.type), self._shown(path), is_head)
            )
        for key, commands in (
            ("head_start_ray_commands", self.head_start),
            ("worker_start_ray_commands", self.worker_start),
        ):
            if not any(f"--config {HOSTS_DIR}/" in c for c in commands):
                self.fail(
                    "",
                    key,
                    f"must start this host's NodeConfig: aegis node start --config "
                    f"{HOSTS_DIR}/<address>.yaml",
                )
        return head

    # -- every provider

    def _start_commands(self) -> None:
        for key, commands in (
            ("head_start_ray_commands", self.head_start),
            ("worker_start_ray_commands", self.worker_start),
        ):
            if not any("aegis node start" in c for c in commands):
                self.fail("", key, "must run `aegis node start` (it starts Ray for aegis)")
        if not any("--autoscaling-config" in c for c in self.head_start):
            self.fail(
                "",
                "head_start_ray_commands",
                "must hand Ray the launcher's config: aegis node start ... "
                "--ray-arg=--autoscaling-config=~/ray_bootstrap_config.yaml",
            )

    def _ports(self, head: NodeConfig) -> None:
        where = f"node type {self.prepared['head_node_type']}"
        if self.provider == "local":
            where = f"host {self.prepared['provider']['head_ip']}"
        api = head.spec.api
        for key, port, want in (
            ("spec.api.rest_port", api.rest_port, REST_PORT),
            ("spec.api.grpc_port", api.grpc_port, GRPC_PORT),
        ):
            if port != want:
                self.fail(
                    where,
                    key,
                    f"{port}, but the deployment document's port is {want} "
                    f"({DEPLOYMENT_PORTS[want]}; edges and clients connect there)",
                )
        if api.bind in ("localhost", "::1") or api.bind.startswith("127."):
            self.fail(
                where,
                "spec.api.bind",
                f"{api.bind!r} is loopback: edges and clients on other machines cannot reach the "
                "API; bind 0.0.0.0 and restrict access with the firewall / security group",
            )
        if not any("--orchestrator-url" in c for c in self.worker_start):
            self._orchestrator_urls(api.rest_port)
        for i, command in enumerate(self.worker_start):
            for url in _ORCH_URL.findall(command):
                if not _ORCH_URL_PORT.search(f"--orchestrator-url {url}") or not url.startswith(
                    "http://"
                ):
                    self.fail(
                        "",
                        f"worker_start_ray_commands[{i}]",
                        f"--orchestrator-url {url}: give http://HOST:{api.rest_port} (the "
                        "head's API is plain HTTP on its rest_port; without a port the edge "
                        "would call 80)",
                    )
            for port in _ORCH_URL_PORT.findall(command):
                if int(port) != api.rest_port:
                    self.fail(
                        "",
                        f"worker_start_ray_commands[{i}]",
                        f"--orchestrator-url port {port}, but the head's API listens on "
                        f"{api.rest_port}",
                    )
        group = self.prepared["provider"].get("security_group") or {}
        permissions = group.get("IpPermissions")
        if isinstance(permissions, list):
            self._ray_ports_closed(permissions)
            for port, what in DEPLOYMENT_PORTS.items():
                if not any(_opens(p, port) for p in permissions):
                    self.fail(
                        "",
                        "provider.security_group.IpPermissions",
                        f"does not open TCP {port} ({what}): the deployment document's "
                        "networking table needs it",
                    )

    def _ray_tls(self, head: NodeConfig) -> None:
        """Ray's TLS on every node or on none: a raylet without it cannot talk to a head with
        it, nor the other way round."""
        on = head.spec.ray_tls is not None
        for where, cfg in self.workers:
            if (cfg.spec.ray_tls is not None) != on:
                self.fail(
                    where,
                    "spec.ray_tls",
                    f"{'missing' if on else 'set'}, but the head's NodeConfig "
                    f"{'sets' if on else 'does not set'} it: Ray's TLS is on every node or none",
                )

    def _orchestrators(self, head: NodeConfig) -> None:
        """HA: 1-3 orchestrators (the head and worker types running orchestrator NodeConfigs,
        a fixed count each), as many API replicas as orchestrators, and services every one of
        them reaches."""
        types = self.prepared.get("available_node_types") or {}
        joining = [w for w, cfg in self.workers if cfg.spec.node.type == NodeType.ORCHESTRATOR]
        count = 1
        for where in joining:
            if not where.startswith("node type "):  # on-prem: one host each
                count += 1
                continue
            spec = types.get(where.removeprefix("node type ")) or {}
            low, high = int(spec.get("min_workers", 0)), int(spec.get("max_workers", 0))
            if low != high:
                self.fail(
                    where,
                    "min_workers",
                    f"{low}, max_workers {high}: orchestrators are not autoscaled; give both "
                    "the same count (each runs one API replica)",
                )
            count += high
        head_where = f"node type {self.prepared.get('head_node_type')}"
        if count > 3:
            self.fail("", "available_node_types", f"{count} orchestrators: 1 to 3 are supported")
        api = head.spec.api
        if api.orchestrators != count:
            self.fail(
                head_where,
                "spec.api.orchestrators",
                f"{api.orchestrators}, but the cluster has {count} orchestrator(s) (the head and "
                "its orchestrator worker types): one API replica each",
            )
        if count == 1:
            return
        self.summary.warnings.append(
            f"{count} orchestrators: put a load balancer in front of their ports 8080 and 50051 "
            "(cluster_configs/lb/haproxy.cfg, or a cloud load balancer with HTTP/2 to 50051)"
        )
        loopback = ("127.", "localhost", "::1")
        db, temporal = head.spec.database, head.spec.temporal
        if db is None or urlsplit(db.url).hostname in (None, "localhost", "::1") or (
            urlsplit(db.url).hostname or ""
        ).startswith("127."):
            self.fail(
                head_where,
                "spec.database.url",
                "several orchestrators share one PostgreSQL: name it by an address every "
                "orchestrator reaches (the embedded one serves the head only)",
            )
        secrets = head.spec.secrets
        if secrets is None or (urlsplit(str(secrets.address)).hostname or "").startswith(
            ("127.", "localhost")
        ):
            self.fail(
                head_where,
                "spec.secrets.address",
                "several orchestrators share one OpenBao: name it by an address every "
                "orchestrator reaches (the embedded one serves the head only)",
            )
        if temporal is None or temporal.address.startswith(loopback):
            self.fail(
                head_where,
                "spec.temporal.address",
                "several orchestrators share one Temporal: name it by an address every "
                "orchestrator reaches (the dev server serves the head only)",
            )

    def _orchestrator_urls(self, rest_port: int) -> None:
        """Edges that call back to the orchestrator_url of their own NodeConfig."""
        head_ip = self.prepared["provider"].get("head_ip")
        for where, cfg in self.workers:
            url = urlsplit(str(cfg.spec.runtime.orchestrator_url))
            port = url.port or (443 if url.scheme == "https" else 80)
            if port != rest_port:
                self.fail(
                    where,
                    "spec.runtime.orchestrator_url",
                    f"port {port}, but the head's API listens on {rest_port}",
                )
            if head_ip and _is_ip(url.hostname or "") and url.hostname != head_ip:
                self.fail(
                    where,
                    "spec.runtime.orchestrator_url",
                    f"names {url.hostname}, but the head is {head_ip}",
                )

    def _join_secret(self) -> None:
        uses = any(JOIN_SECRET in c for c in self.head_start + self.worker_start)
        if not uses:
            return
        edges_present = any("--join-token-file" in c for c in self.worker_start)
        if edges_present and not any("--join-secret-file" in c for c in self.head_start):
            self.fail(
                "",
                "head_start_ray_commands",
                "edges present a join secret (--join-token-file) but the head never accepts "
                "one: add --join-secret-file to its `aegis node start`, or every edge gets 401",
            )
        local = self.mounts.get(JOIN_SECRET)
        if local is None:
            self.fail(
                "",
                "file_mounts",
                f"the start commands read {JOIN_SECRET}: ship it, e.g. "
                f'"{JOIN_SECRET}": "~/.aegis/cluster-join-secret"',
            )
        elif not local.exists():
            self.summary.warnings.append(
                f"file_mounts: {JOIN_SECRET}: {local} does not exist yet; create it before "
                f"`ray up` with `aegis cluster secret {local}`"
            )


    def _ray_ports_closed(self, permissions: list[Any]) -> None:
        """No rule may open Ray's ports to everybody: Ray's launcher already lets the cluster's
        own nodes reach each other."""
        for i, p in enumerate(permissions):
            if not isinstance(p, dict):
                continue
            ranges = [r.get("CidrIp") for r in p.get("IpRanges") or [] if isinstance(r, dict)]
            ranges += [r.get("CidrIpv6") for r in p.get("Ipv6Ranges") or [] if isinstance(r, dict)]
            world = [r for r in ranges if r in _ANYWHERE]
            if not world:
                continue
            opened = [f"{port} ({what})" for port, what in RAY_PORTS.items() if _opens(p, port)]
            low, high = RAY_WORKER_PORTS
            if any(_opens(p, port) for port in (low, high)) or _covers(p, low, high):
                opened.append(f"{low}-{high} (Ray workers)")
            if opened:
                self.fail(
                    "",
                    f"provider.security_group.IpPermissions[{i}]",
                    f"opens Ray's ports {', '.join(opened)} to {', '.join(world)}: with the Ray "
                    "token they run code on every node; only the cluster's own nodes may reach "
                    "them (Ray's launcher allows traffic between them already)",
                )


def _covers(permission: dict[str, Any], low: int, high: int) -> bool:
    start, end = permission.get("FromPort"), permission.get("ToPort")
    return isinstance(start, int) and isinstance(end, int) and start <= high and end >= low


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _opens(permission: Any, port: int) -> bool:
    if not isinstance(permission, dict):
        return False
    if str(permission.get("IpProtocol")) == "-1":
        return True
    low, high = permission.get("FromPort"), permission.get("ToPort")
    return (
        str(permission.get("IpProtocol")).lower() in ("tcp", "6")
        and isinstance(low, int)
        and isinstance(high, int)
        and low <= port <= high
    )
