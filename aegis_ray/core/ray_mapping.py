"""The mapping NodeConfig -> `ray start` arguments: a node's Ray resources and labels.

Resources carry capacities and tags that must match (Ray consumes them); labels carry descriptive
metadata (ray-facts.md). The names are spelled in `naming`, the resource dimensions in
`placement.dimensions` (which NodeConfig field each is read from, and in which Ray unit).

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

from aegis_ray.core.models.node import (
    DEFAULT_DOCKER_NETWORK,
    EXECUTING_ROLES,
    ORCHESTRATING_ROLES,
    NodeConfig,
)
from aegis_ray.core.naming import (
    CPU,
    GPU,
    LABEL_DOCKER_NETWORK,
    LABEL_NODE_ID,
    LABEL_REGION,
    LABEL_ROLE,
    MEMORY,
    ORCHESTRATOR,
    tag_resource,
)
from aegis_ray.core.placement.dimensions import Resources


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
    executes = node.type in EXECUTING_ROLES

    # Ray's own resources have their own flags; aegis's dimensions go in --resources.
    offered = Resources.offered_by(cfg).to_ray()
    num_cpus = int(offered.pop(CPU, 0))
    num_gpus = int(offered.pop(GPU, 0))
    memory = int(offered.pop(MEMORY, 0))
    if not executes:
        num_cpus = max(num_cpus, 1)  # see the module docstring: a control plane needs a CPU

    resources: dict[str, float] = {}
    if node.type in ORCHESTRATING_ROLES:
        resources[ORCHESTRATOR] = 1.0
    resources |= offered
    if executes:
        for tag in node.tags:
            resources[tag_resource(tag)] = 1.0

    labels = {LABEL_NODE_ID: node.id, LABEL_ROLE: str(node.type), LABEL_REGION: node.region}
    network = cfg.spec.runtime.docker_network_mode
    if executes and network != DEFAULT_DOCKER_NETWORK:
        # The node agent reads it from its node's labels (absent: the default bridge).
        labels[LABEL_DOCKER_NETWORK] = network
    return RayStartArgs(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        memory_bytes=memory,
        resources=resources,
        labels=labels,
    )
