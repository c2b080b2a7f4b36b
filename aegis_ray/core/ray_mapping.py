"""The Ray resource and label names aegis uses, and the mapping NodeConfig -> `ray start` args.

This module is the one place these names are spelled. Resources carry capacities and tags that
must match (Ray consumes them); labels carry descriptive metadata (ray-facts.md).

| NodeConfig               | orchestrator               | edge                | hybrid     |
|--------------------------|----------------------------|---------------------|------------|
| resources.cpu_cores      | --num-cpus (1 if absent)   | --num-cpus          | --num-cpus |
| resources.gpu            | --num-gpus (0 if absent)   | --num-gpus          | --num-gpus |
| resources.memory_gb      | --memory (Ray's if absent) | --memory            | --memory   |
| resources.disk_gb (GiB)  | -                          | aegis/disk_gb       | both       |
| runtime.max_containers   | -                          | aegis/executor      | both       |
| tags                     | -                          | aegis/tag/<tag> = 1 | both       |
| (role marker)            | aegis/orchestrator = 1     | -                   | both       |
| id, type, region         | labels aegis/node-id, aegis/role, aegis/region (every role)   |

Orchestrators get no executor slots, so no execution bundle can ever land on them. Without
declared resources an orchestrator still gets one CPU (Ray schedules nothing on a zero-CPU node
that asks for the default CPU) and leaves memory to Ray (memory_bytes 0: no --memory flag).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aegis_ray.core.models.node import NodeConfig

EXECUTOR = "aegis/executor"
ORCHESTRATOR = "aegis/orchestrator"
DISK = "aegis/disk_gb"
TAG_PREFIX = "aegis/tag/"
# What a bundle asks of each required tag; a node has 1 of each of its tags, so at most
# 1 / TAG_AMOUNT = 1000 tagged executions fit on a node at once (max_containers is capped there).
TAG_AMOUNT = 0.001

LABEL_NODE_ID = "aegis/node-id"
LABEL_ROLE = "aegis/role"
LABEL_REGION = "aegis/region"

GIB = 2**30

def tag_resource(tag: str) -> str:
    """The Ray resource name that stands for a node tag."""
    return TAG_PREFIX + tag


@dataclass(frozen=True)
class RayStartArgs:
    """What `ray start` needs to know about one aegis node."""

    num_cpus: int
    num_gpus: int
    memory_bytes: int  # 0: let Ray size it
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def cli_args(self) -> list[str]:
        """The `ray start` flags, one argv element each (no shell quoting needed)."""
        args = [f"--num-cpus={self.num_cpus}", f"--num-gpus={self.num_gpus}"]
        if self.memory_bytes:
            args.append(f"--memory={self.memory_bytes}")
        if self.resources:
            args.append(
                "--resources=" + json.dumps(self.resources, sort_keys=True, separators=(",", ":"))
            )
        if self.labels:
            args.append("--labels=" + ",".join(f"{k}={v}" for k, v in self.labels.items()))
        return args


def ray_start_args(cfg: NodeConfig) -> RayStartArgs:
    """Map a validated NodeConfig to Ray resources and labels (table in the module docstring)."""
    node = cfg.spec.node
    role = str(node.type)
    res = node.resources
    executes = role in ("edge", "hybrid")
    orchestrates = role in ("orchestrator", "hybrid")

    resources: dict[str, float] = {}
    if orchestrates:
        resources[ORCHESTRATOR] = 1.0
    if executes:
        resources[EXECUTOR] = float(cfg.spec.runtime.max_containers)
        if res is not None and res.disk_gb > 0:
            resources[DISK] = float(res.disk_gb)
        for tag in node.tags:
            resources[tag_resource(tag)] = 1.0

    if res is None:
        num_cpus, num_gpus, memory = 1, 0, 0
    else:
        num_cpus = res.cpu_cores if executes else max(res.cpu_cores, 1)
        num_gpus, memory = res.gpu, res.memory_gb * GIB

    labels = {LABEL_NODE_ID: node.id, LABEL_ROLE: role, LABEL_REGION: node.region}
    return RayStartArgs(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        memory_bytes=memory,
        resources=resources,
        labels=labels,
    )
