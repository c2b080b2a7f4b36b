"""The names aegis gives things in Ray and Temporal have one home, and every default uses it."""

from __future__ import annotations

from aegis_ray.api.context import ControlPlaneConfig
from aegis_ray.core import naming as N
from aegis_ray.core.models.node import NodeStatus, NodeType, TemporalSection, role_of
from aegis_ray.settings import Settings


def test_every_task_queue_default_is_the_one_name() -> None:
    defaults = {
        Settings.model_fields["task_queue"].default,
        TemporalSection.model_fields["task_queue"].default,
        ControlPlaneConfig.__dataclass_fields__["task_queue"].default,
    }
    assert defaults == {N.TASK_QUEUE}


def test_names_derived_from_ids_tell_objects_apart() -> None:
    assert N.workflow_id("e1") != N.workflow_id("e2")
    assert N.placement_group_name("e1", 1) != N.placement_group_name("e1", 2)
    assert N.node_agent_name("edge-1") == "aegis-node-agent:edge-1"
    assert N.tag_resource("gpu").startswith(N.TAG_PREFIX)


def test_roles_and_statuses_read_from_ray_or_the_registry() -> None:
    assert role_of("edge", NodeType.HYBRID) is NodeType.EDGE
    assert role_of(None, NodeType.HYBRID) is NodeType.HYBRID  # a head started by hand
    assert role_of("controller?", NodeType.EDGE) is NodeType.EDGE
    assert [str(s) for s in NodeStatus] == ["ready", "draining", "down", "gone"]
