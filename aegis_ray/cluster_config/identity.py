"""Per-instance identity of a node the cluster launcher starts: its node id and orchestrator URL.

Instances of one autoscaled node type share a NodeConfig; `aegis node start --node-id
'{id}-{host}'` gives each its own id, and the launcher's head address its orchestrator URL.
"""

from __future__ import annotations

import re

from aegis_ray.core.models.loading import parse_node_config
from aegis_ray.core.models.node import NodeConfig

_MAX_NODE_ID = 63


def host_part(hostname: str) -> str:
    """A host name as a node-id fragment: first label, lowercase, other characters to '-'."""
    short = hostname.split(".", 1)[0].lower()
    return re.sub(r"[^a-z0-9-]+", "-", short).strip("-") or "host"


def instance_node_id(template: str, config_id: str, hostname: str) -> str:
    """Fill a node-id template: `{id}` is the NodeConfig's id, `{host}` this host's short name.

    Instances of one autoscaled node type share a NodeConfig; '{id}-{host}' tells them apart.
    The host part is shortened so that the id stays within 63 characters.
    """
    unknown = set(re.findall(r"\{([^}]*)\}", template)) - {"id", "host"}
    if unknown:
        names = ", ".join(sorted("{" + u + "}" for u in unknown))
        raise ValueError(
            f"node id {template!r}: unknown placeholder {names} (known: {{id}}, {{host}})"
        )
    fixed = template.replace("{id}", config_id)
    if "{host}" in fixed:
        room = _MAX_NODE_ID - len(fixed.replace("{host}", ""))
        fixed = fixed.replace("{host}", host_part(hostname)[: max(room, 1)].rstrip("-"))
    return fixed


def with_overrides(
    cfg: NodeConfig,
    *,
    source: str,
    node_id: str | None = None,
    orchestrator_url: str | None = None,
) -> NodeConfig:
    """`cfg` with this instance's node id and/or orchestrator URL; raises ManifestError."""
    doc = cfg.to_document()
    if node_id is not None:
        doc["spec"]["node"]["id"] = node_id
    if orchestrator_url is not None:
        doc["spec"].setdefault("runtime", {})["orchestrator_url"] = orchestrator_url
    return parse_node_config(doc, source=f"{source} (with command-line overrides)")
