"""Which resource names and labels a cluster YAML node type may carry (Ray's rules and aegis's)."""

from __future__ import annotations

from typing import Any

from aegis_ray.core.models.tags import validate_tag
from aegis_ray.core.naming import ORCHESTRATOR, RAY_OWN_RESOURCES, TAG_PREFIX
from aegis_ray.core.placement.dimensions import DIMENSIONS

# Ray's own names a node type may declare besides aegis's.
RAY_RESOURCES = RAY_OWN_RESOURCES | {"object_store_memory"}
# aegis's own resources: the dimensions Ray has no name for, and the orchestrator marker.
AEGIS_RESOURCES = (
    *(d.ray for d in DIMENSIONS if d.ray not in RAY_OWN_RESOURCES),
    ORCHESTRATOR,
)


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
    elif name.startswith("aegis/") and name not in AEGIS_RESOURCES:
        known = ", ".join((*AEGIS_RESOURCES, TAG_PREFIX + "<tag>"))
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
