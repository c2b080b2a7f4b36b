"""Names of the Ray and Temporal objects aegis makes, each spelled once.

Derived names (workflow ids, placement groups, node agents) can always be found again from what
they are named after, after any restart.
"""

from __future__ import annotations

RAY_NAMESPACE = "aegis"
TASK_QUEUE = "aegis-executions"
WORKFLOW_NAME = "aegis.execution"


def workflow_id(execution_id: object) -> str:
    """Temporal workflow id of an execution."""
    return f"aegis-execution-{execution_id}"


def pg_name(execution_id: str, attempt: int) -> str:
    """Name of an attempt's placement group (a group made anew adds ".N")."""
    return f"aegis-{execution_id}-a{attempt}"


def node_agent_name(node_id: str) -> str:
    """Name of a node's agent actor, as the Ray dashboard shows it."""
    return f"aegis-node-agent:{node_id}"
