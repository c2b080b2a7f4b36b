"""Manifest -> placement-group bundle, and fit checks that explain every refusal (pure)."""

from aegis_ray.core.placement.demand import Demand, bundle_of, demand_of
from aegis_ray.core.placement.dimensions import DIMENSIONS, Dimension, Resources
from aegis_ray.core.placement.fit import NodeFacts, PlanResult, Reason, check_node, plan

__all__ = [
    "DIMENSIONS",
    "Demand",
    "Dimension",
    "NodeFacts",
    "PlanResult",
    "Reason",
    "Resources",
    "bundle_of",
    "check_node",
    "demand_of",
    "plan",
]
