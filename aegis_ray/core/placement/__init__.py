"""Manifest -> placement-group bundle, and fit checks that explain every refusal (pure)."""

from aegis_ray.core.placement.demand import Demand, bundle_of, demand_of
from aegis_ray.core.placement.fit import Capacity, NodeFacts, PlanResult, Reason, check_node, plan

__all__ = [
    "Capacity",
    "Demand",
    "NodeFacts",
    "PlanResult",
    "Reason",
    "bundle_of",
    "check_node",
    "demand_of",
    "plan",
]
