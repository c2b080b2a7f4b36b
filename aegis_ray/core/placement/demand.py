"""What one execution asks of a node, and the placement-group bundle that asks it of Ray."""

from __future__ import annotations

from dataclasses import dataclass

from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.ray_mapping import DISK, EXECUTOR, GIB, TAG_AMOUNT, tag_resource


@dataclass(frozen=True)
class Demand:
    cpu_millis: int
    memory_bytes: int
    disk_bytes: int
    gpu: int
    tags: tuple[str, ...] = ()


def demand_of(manifest: AgentManifest) -> Demand:
    """The resources and tags one execution of `manifest` needs on its node."""
    res = manifest.spec.security.resources
    return Demand(
        cpu_millis=res.cpu,
        memory_bytes=res.memory,
        disk_bytes=res.disk,
        gpu=res.gpu,
        tags=tuple(manifest.spec.execution.target_tags),
    )


def bundle_of(demand: Demand) -> dict[str, float]:
    """The single STRICT_PACK bundle for `demand`: CPU, memory, GPU, disk, a slot, each tag."""
    bundle: dict[str, float] = {"CPU": demand.cpu_millis / 1000, "memory": demand.memory_bytes}
    if demand.gpu:
        bundle["GPU"] = demand.gpu
    if demand.disk_bytes:
        bundle[DISK] = demand.disk_bytes / GIB
    bundle[EXECUTOR] = 1
    for tag in demand.tags:
        bundle[tag_resource(tag)] = TAG_AMOUNT
    return bundle
