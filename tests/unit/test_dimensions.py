"""The table of resource dimensions: every manifest and NodeConfig resource field is one of
them, and each is read, mapped to Ray and shown from its one row."""

from __future__ import annotations

from typing import Any

import pytest

from aegis_ray.core import naming as N
from aegis_ray.core.models.agent import ResourceSpec
from aegis_ray.core.models.loading import parse_node_config
from aegis_ray.core.models.node import NodeConfig, NodeResources
from aegis_ray.core.placement.dimensions import DIMENSIONS, Resources

GiB = 2**30


def config(node_type: str, **spec: Any) -> NodeConfig:
    node = {"id": "n-1", "type": node_type, **spec.pop("node", {})}
    return parse_node_config(
        {
            "apiVersion": "100monkeys.ai/v1",
            "kind": "NodeConfig",
            "metadata": {"name": "n"},
            "spec": {"node": node, **spec},
        }
    )


def test_every_manifest_resource_limit_is_a_dimension() -> None:
    limits = set(ResourceSpec.model_fields) - {"timeout"}  # a limit, but not one a node offers
    assert limits == {d.manifest for d in DIMENSIONS if d.manifest is not None}


def test_every_node_config_resource_is_a_dimension() -> None:
    offered = {d.node_config for d in DIMENSIONS}
    assert {f"node.resources.{f}" for f in NodeResources.model_fields} <= offered


def test_dimension_names_fields_and_ray_resources_are_unique() -> None:
    for attribute in ("name", "ray", "node_config"):
        values = [getattr(d, attribute) for d in DIMENSIONS]
        assert len(set(values)) == len(values), attribute
    assert len(DIMENSIONS) == len(Resources._fields)


def test_an_edge_offers_every_dimension_in_its_unit() -> None:
    resources = {"cpu_cores": 4, "memory_gb": 8, "disk_gb": 50, "gpu": 1}
    edge = config(
        "edge",
        node={"resources": resources},
        runtime={"orchestrator_url": "http://o:8080", "max_containers": 6},
    )
    assert Resources.offered_by(edge) == Resources(4000, 8 * GiB, 50 * GiB, 1, 6)


def test_an_orchestrator_offers_no_disk_and_no_slots() -> None:
    orchestrator = config(
        "orchestrator", node={"resources": {"cpu_cores": 4, "memory_gb": 8, "disk_gb": 50}}
    )
    assert Resources.offered_by(orchestrator) == Resources(4000, 8 * GiB, 0, 0, 0)
    assert Resources.offered_by(config("orchestrator")) == Resources()


def test_to_ray_uses_rays_units_and_leaves_out_empty_dimensions() -> None:
    assert Resources(1500, GiB, GiB // 2, 0, 1).to_ray() == {
        N.CPU: 1.5,
        N.MEMORY: float(GiB),
        N.DISK: 0.5,
        N.EXECUTOR: 1.0,
    }


@pytest.mark.parametrize("dim", DIMENSIONS, ids=lambda d: d.name)
def test_whole_amounts_survive_the_round_trip_through_ray(dim: Any) -> None:
    for amount in (0, 1, 7, 1000, 3 * GiB):
        assert dim.from_ray(dim.to_ray(amount)) == amount
