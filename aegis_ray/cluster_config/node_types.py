"""NodeConfig -> cluster YAML node type: the `resources` and `labels` `aegis node start` gives Ray.

Each node type of a cluster YAML runs the NodeConfig of its own name; its `resources` and `labels`
must be what `aegis node start` gives Ray for that NodeConfig, because the launcher also hands
them to Ray (RAY_OVERRIDE_RESOURCES / RAY_OVERRIDE_LABELS) and plans autoscaling with them.
"""

from __future__ import annotations

from typing import Any

from aegis_ray.core.models.node import NodeConfig
from aegis_ray.core.naming import CPU, GPU, LABEL_NODE_ID, MEMORY
from aegis_ray.core.ray_mapping import ray_start_args


def node_type_resources(cfg: NodeConfig) -> dict[str, int]:
    """The `resources` of a node type running `cfg`: what `aegis node start` gives Ray.

    Whole numbers (the launcher's schema takes no fractions); `memory` in bytes, as Ray counts it.
    """
    args = ray_start_args(cfg)
    out = {CPU: args.num_cpus}
    if args.num_gpus:
        out[GPU] = args.num_gpus
    if args.memory_bytes:
        out[MEMORY] = args.memory_bytes
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
