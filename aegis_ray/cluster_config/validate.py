"""`ray up` cluster YAMLs for aegis: NodeConfig -> node type mapping and offline validation.

A cluster YAML (cluster_configs/aws.yaml, onprem.yaml) runs `aegis node start` on every node. Each
node type runs the NodeConfig of its own name, shipped to ``~/aegis/nodes``; its `resources` and
`labels` must be what `aegis node start` gives Ray for that NodeConfig, because the launcher also
hands them to Ray (RAY_OVERRIDE_RESOURCES / RAY_OVERRIDE_LABELS) and plans autoscaling with them.
The on-prem `local` provider has one node type and no per-type resources: each host runs the
NodeConfig named after its address, shipped to ``~/aegis/hosts``.

`validate_cluster` checks a YAML with Ray's own launcher code (`prepare_config`, the schema,
`validate_config`; private API, Ray is pinned) and then aegis's cross-checks. Nothing here talks
to a cloud or needs credentials.
"""

from __future__ import annotations

import contextlib
import copy
import io
import ipaddress
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from aegis_ray.core.models.loading import ManifestError, load_file, parse_node_config
from aegis_ray.core.models.node import NodeConfig
from aegis_ray.core.models.tags import validate_tag
from aegis_ray.core.ray_mapping import (
    DISK,
    EXECUTOR,
    LABEL_NODE_ID,
    ORCHESTRATOR,
    TAG_PREFIX,
    ray_start_args,
)

# Where the cluster YAMLs ship files to (file_mounts targets) and what their commands use.
NODES_DIR = "~/aegis/nodes"  # one NodeConfig per node type, named after the type
HOSTS_DIR = "~/aegis/hosts"  # on-prem: one NodeConfig per host, named after its address
SELECTED_CONFIG = "~/aegis/node.yaml"  # a worker's own NodeConfig, linked by its type's commands
JOIN_SECRET = "~/aegis/cluster-join-secret"  # pre-shared join secret (`aegis cluster secret`)

# The deployment document's networking table: edges and clients reach the orchestrator here.
DEPLOYMENT_PORTS = {8080: "REST API", 50051: "gRPC API"}
REST_PORT, GRPC_PORT = 8080, 50051

# Ray's own names a node type may declare besides aegis's.
RAY_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
COMMAND_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)
NODE_TYPE_COMMAND_KEYS = ("initialization_commands", "worker_setup_commands")
_RAY_STOP = re.compile(r"(^|[;&|(`]|\s)ray\s+stop\b")
_ORCH_URL = re.compile(r"--orchestrator-url[= ](\S+)")
_ORCH_URL_PORT = re.compile(r"--orchestrator-url[= ]\S*?:(?:\$\{\w+:-)?(\d+)")
_MAX_NODE_ID = 63


# ---------------------------------------------------------------- NodeConfig -> node type


def node_type_resources(cfg: NodeConfig) -> dict[str, int]:
    """The `resources` of a node type running `cfg`: what `aegis node start` gives Ray.

    Whole numbers (the launcher's schema takes no fractions); `memory` in bytes, as Ray counts it.
    """
    args = ray_start_args(cfg)
    out = {"CPU": args.num_cpus}
    if args.num_gpus:
        out["GPU"] = args.num_gpus
    if args.memory_bytes:
        out["memory"] = args.memory_bytes
    for name, amount in args.resources.items():
        if amount != int(amount):
            raise ValueError(f"resource {name} = {amount} is not a whole number")
        out[name] = int(amount)
    return out


def node_type_labels(cfg: NodeConfig) -> dict[str, str]:
    """The `labels` of a node type running `cfg`: all but the node id, set per instance."""
    return {k: v for k, v in ray_start_args(cfg).labels.items() if k != LABEL_NODE_ID}


def node_type_snippet(cfg: NodeConfig) -> dict[str, Any]:
    """The `resources` and `labels` to paste into a cluster YAML node type for `cfg`."""
    return {"resources": node_type_resources(cfg), "labels": node_type_labels(cfg)}


def host_part(hostname: str) -> str:
    """A host name as a node-id fragment: first label, lowercase, other characters to '-'."""
    short = hostname.split(".", 1)[0].lower()
    return re.sub(r"[^a-z0-9-]+", "-", short).strip("-") or "host"


def instance_node_id(template: str, config_id: str, hostname: str) -> str:
    """Fill a node-id template: `{id}` is the NodeConfig's id, `{host}` this host's short name.

    Instances of one autoscaled node type share a NodeConfig; '{id}-{host}' tells them apart.
    The host part is shortened so that the id stays within 63 characters.
    """
    unknown = set(re.findall(r"\{([^}]*)\}", template)) - {"id", "host"}
    if unknown:
        names = ", ".join(sorted("{" + u + "}" for u in unknown))
        raise ValueError(
            f"node id {template!r}: unknown placeholder {names} (known: {{id}}, {{host}})"
        )
    fixed = template.replace("{id}", config_id)
    if "{host}" in fixed:
        room = _MAX_NODE_ID - len(fixed.replace("{host}", ""))
        fixed = fixed.replace("{host}", host_part(hostname)[: max(room, 1)].rstrip("-"))
    return fixed


def with_overrides(
    cfg: NodeConfig,
    *,
    source: str,
    node_id: str | None = None,
    orchestrator_url: str | None = None,
) -> NodeConfig:
    """`cfg` with this instance's node id and/or orchestrator URL; raises ManifestError."""
    doc = cfg.to_document()
    if node_id is not None:
        doc["spec"]["node"]["id"] = node_id
    if orchestrator_url is not None:
        doc["spec"].setdefault("runtime", {})["orchestrator_url"] = orchestrator_url
    return parse_node_config(doc, source=f"{source} (with command-line overrides)")


def resource_name_problem(name: str) -> str | None:
    """Why Ray or aegis cannot use `name` as a node type resource, or None."""
    if name in RAY_RESOURCES:
        return None
    if name == "bundle" or name.startswith("node:"):
        return "a resource name Ray reserves"
    if "_group_" in name:
        return "must not contain '_group_' (Ray reserves it: anything asking for it stays pending)"
    if name.startswith(TAG_PREFIX):
        try:
            validate_tag(name[len(TAG_PREFIX) :])
        except ValueError as err:
            return str(err)
    elif name.startswith("aegis/") and name not in (EXECUTOR, ORCHESTRATOR, DISK):
        known = ", ".join((EXECUTOR, ORCHESTRATOR, DISK, TAG_PREFIX + "<tag>"))
        return f"not an aegis resource (known: {known})"
    return None


def label_problem(key: str, value: Any) -> str | None:
    """Why Ray rejects this node label, or None (Ray's own label syntax check)."""
    from ray._private.label_utils import validate_node_label_syntax, validate_node_labels

    if not isinstance(value, str):
        return f"a label value must be a string (got {value!r})"
    try:
        validate_node_labels({key: value})
        validate_node_label_syntax({key: value})
    except ValueError as err:
        return str(err)
    return None


# ---------------------------------------------------------------- validation results


@dataclass(frozen=True)
class ClusterProblem:
    """One thing wrong with a cluster YAML: where (node type or host), which key, and why."""

    where: str  # "node type edge-gpu", "host 10.0.0.11", "" for the document
    key: str  # "resources.CPU", "worker_start_ray_commands[1]", "" for the whole part
    message: str

    def render(self, source: str) -> str:
        return ": ".join(p for p in (source, self.where, self.key, self.message) if p)


class ClusterConfigError(ValueError):
    """A cluster YAML that `ray up` or aegis cannot use, with every problem found."""

    def __init__(self, source: str, problems: list[ClusterProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(p.render(self.source) for p in self.problems)


@dataclass(frozen=True)
class NodeRole:
    """What one node type (or on-prem host) runs."""

    name: str  # node type name, or the host address for the local provider
    role: str  # NodeConfig spec.node.type
    node_config: str  # the NodeConfig file, as the validator found it
    head: bool
    min_workers: int = 0
    max_workers: int = 0


@dataclass
class ClusterSummary:
    source: str
    provider: str
    nodes: list[NodeRole] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- validation


def validate_cluster_file(path: Path, base_dir: Path) -> ClusterSummary:
    """Validate a cluster YAML file; relative file_mounts resolve against `base_dir` (as for
    `ray up`, which resolves them against its working directory). Raises ClusterConfigError."""
    source = str(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ClusterConfigError(
            source, [ClusterProblem("", "", f"cannot read file: {err.strerror}")]
        ) from None
    return validate_cluster(text, source, base_dir)


def validate_cluster(text: str, source: str, base_dir: Path) -> ClusterSummary:
    """Validate cluster YAML text: Ray's launcher checks, then aegis's cross-checks."""
    doc = _parse(text, source)
    problems = _command_problems(doc)
    prepared, ray_problems = _ray_checks(doc)
    problems += ray_problems
    if problems or prepared is None:
        raise ClusterConfigError(source, problems)
    check = _CrossCheck(doc, prepared, source, base_dir)
    check.run()
    if check.problems:
        raise ClusterConfigError(source, check.problems)
    return check.summary


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)  # what `ray up` uses
    except yaml.YAMLError as err:
        message = f"YAML error: {err}"
        if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
            mark = err.problem_mark
            message = f"YAML error at line {mark.line + 1}, column {mark.column + 1}: {err.problem}"
        raise ClusterConfigError(source, [ClusterProblem("", "", message)]) from None
    if not isinstance(doc, dict):
        what = "an empty document" if doc is None else f"a {type(doc).__name__}"
        message = f"expected a cluster config mapping (cluster_name, provider, ...), got {what}"
        raise ClusterConfigError(source, [ClusterProblem("", "", message)])
    return doc


def _command_lists(doc: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(where, key, value) of every command list in the document, top level and per node type."""
    out = [("", key, doc[key]) for key in COMMAND_KEYS if key in doc]
    types = doc.get("available_node_types")
    if isinstance(types, dict):
        for name, spec in types.items():
            if isinstance(spec, dict):
                out += [
                    (f"node type {name}", k, spec[k]) for k in NODE_TYPE_COMMAND_KEYS if k in spec
                ]
    return out


def _command_problems(doc: dict[str, Any]) -> list[ClusterProblem]:
    """Commands YAML turned into something else (the `: ` trap) and `ray stop`."""
    problems = []
    for where, key, commands in _command_lists(doc):
        if not isinstance(commands, list):
            problems.append(
                ClusterProblem(where, key, f"must be a list of commands (got {commands!r})")
            )
            continue
        for i, cmd in enumerate(commands):
            at = f"{key}[{i}]"
            if isinstance(cmd, dict):
                hint = ""
                if len(cmd) == 1:
                    ((k, v),) = cmd.items()
                    hint = f': "{k}: {v}"'
                problems.append(
                    ClusterProblem(where, at, f"a command parsed as a mapping (quote it{hint})")
                )
            elif not isinstance(cmd, str):
                problems.append(ClusterProblem(where, at, f"must be a string (got {cmd!r})"))
            elif _RAY_STOP.search(cmd):
                problems.append(
                    ClusterProblem(
                        where,
                        at,
                        "`ray stop` stops every Ray process on the machine, not just this "
                        "node's: use `aegis node stop --config ...` (idempotent)",
                    )
                )
    return problems


def _ray_checks(doc: dict[str, Any]) -> tuple[dict[str, Any] | None, list[ClusterProblem]]:
    """What Ray's launcher says: prepare_config, its JSON schema, then validate_config."""
    import click
    import jsonschema  # type: ignore[import-untyped]
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    if not isinstance(doc.get("provider"), dict) or "type" not in doc["provider"]:
        return None, [ClusterProblem("", "provider", "required, with a type (aws, local, ...)")]
    ray_logger = logging.getLogger("ray.autoscaler")
    level = ray_logger.level
    ray_logger.setLevel(logging.WARNING)  # prepare_config narrates the defaults it fills in
    try:
        # Its cli_logger prints aborts itself; the exception carries the same message.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            prepared = prepare_config(copy.deepcopy(doc))
    except (click.ClickException, ValueError, KeyError, TypeError, AssertionError) as err:
        message = getattr(err, "message", None) or str(err)
        return None, [ClusterProblem("", "", f"Ray's launcher refuses it: {message}")]
    finally:
        ray_logger.setLevel(level)
    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        schema = json.load(f)
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        p
        for err in sorted(
            validator.iter_errors(prepared), key=lambda e: [str(p) for p in e.absolute_path]
        )
        for p in _schema_problem(err, doc)
    ]
    if not problems:
        try:
            validate_config(prepared)
        except (ValueError, RuntimeError, jsonschema.ValidationError) as err:
            problems.append(ClusterProblem("", "", f"Ray's launcher refuses it: {err}"))
    return prepared, problems


def _schema_problem(err: Any, doc: dict[str, Any]) -> list[ClusterProblem]:
    """A jsonschema error as problems naming the node type and key (command lists excepted:
    `_command_problems` reports those, once, where the user wrote them)."""
    path = list(err.absolute_path)
    where = ""
    if len(path) >= 2 and path[0] == "available_node_types":
        where, path = f"node type {path[1]}", path[2:]
        if path and path[0] in NODE_TYPE_COMMAND_KEYS:
            return []
    elif path and path[0] in COMMAND_KEYS:
        return []
    key = _dotted(path)
    if err.validator == "additionalProperties":
        accepted = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(accepted)) if isinstance(err.instance, dict) else []
        return [
            ClusterProblem(
                where,
                _dotted([*path, name]),
                f"unknown key (Ray's cluster schema accepts: {', '.join(accepted)})",
            )
            for name in extra
        ]
    if (
        err.validator == "type"
        and err.validator_value == "integer"
        and isinstance(err.instance, float)
    ):
        message = (
            f"must be a whole number: the cluster launcher takes no fractions (got {err.instance})"
        )
    elif err.validator == "type":
        message = f"must be of type {err.validator_value} (got {err.instance!r})"
    elif err.validator == "minimum":
        message = f"must be >= {err.validator_value} (got {err.instance!r})"
    elif err.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        return [ClusterProblem(where, _dotted([*path, m]), "required") for m in missing]
    else:
        message = err.message
    return [ClusterProblem(where, key, message)]


def _dotted(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _CrossCheck:
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
        role = str(cfg.spec.node.type)
        if is_head and role == "edge":
            self.fail(
                where,
                "",
                "the head node type must run an orchestrator or hybrid NodeConfig (got edge)",
            )
        if not is_head and role != "edge":
            self.fail(
                where,
                "",
                f"a worker node type must run an edge NodeConfig (got {role}): `aegis node start` "
                f"on a {role} starts a second Ray head",
            )

    def _resources(self, where: str, declared: dict[str, Any], cfg: NodeConfig, shown: str) -> None:
        expected = node_type_resources(cfg)
        skip = set()
        if str(cfg.spec.node.type) == "orchestrator" and EXECUTOR in declared:
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
            for port, what in DEPLOYMENT_PORTS.items():
                if not any(_opens(p, port) for p in permissions):
                    self.fail(
                        "",
                        "provider.security_group.IpPermissions",
                        f"does not open TCP {port} ({what}): the deployment document's "
                        "networking table needs it",
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
