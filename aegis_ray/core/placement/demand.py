"""What one execution asks of a node, and the placement-group bundle that asks it of Ray."""

from __future__ import annotations

from dataclasses import dataclass

from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.naming import TAG_AMOUNT, tag_resource
from aegis_ray.core.placement.dimensions import Resources


@dataclass(frozen=True)
class Demand:
    """An amount of every dimension (one executor slot included) and the tags a node must carry."""

    resources: Resources
    tags: tuple[str, ...] = ()


def demand_of(manifest: AgentManifest) -> Demand:
    """The resources and tags one execution of `manifest` needs on its node."""
    return Demand(
        Resources.needed_by(manifest.spec.security.resources),
        tuple(manifest.spec.execution.target_tags),
    )


def bundle_of(demand: Demand) -> dict[str, float]:
    """The single STRICT_PACK bundle for `demand`: every dimension it needs, and each tag."""
    bundle = demand.resources.to_ray()
    for tag in demand.tags:
        bundle[tag_resource(tag)] = TAG_AMOUNT
    return bundle
