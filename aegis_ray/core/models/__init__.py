"""Manifest and node models, quantities and execution states (pure: no adapters)."""

from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.models.execution import ExecutionState, can_transition, is_terminal
from aegis_ray.core.models.loading import (
    ManifestError,
    Problem,
    json_schema,
    load_file,
    parse_agent,
    parse_document,
    parse_node_config,
)
from aegis_ray.core.models.node import NodeConfig, NodeType

__all__ = [
    "AgentManifest",
    "ExecutionState",
    "ManifestError",
    "NodeConfig",
    "NodeType",
    "Problem",
    "can_transition",
    "is_terminal",
    "json_schema",
    "load_file",
    "parse_agent",
    "parse_document",
    "parse_node_config",
]
