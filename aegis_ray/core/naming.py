"""The names aegis gives things in Ray and Temporal: the one place each is spelled.

Ray: the namespace of aegis's named actors, the resources and labels a node carries (see
`ray_mapping` for which NodeConfig field becomes which), the names of placement groups and actors.
Temporal: the task queue and the workflow id of an execution. Names derived from an id are
functions, so that anything can find an object again from the id alone.
"""

from __future__ import annotations

# --- Ray ----------------------------------------------------------------------------------

# Named actors and the drivers that look them up live in this namespace.
RAY_NAMESPACE = "aegis"

# Ray's own resources (each has its own `ray start` flag: --num-cpus, --num-gpus, --memory).
CPU = "CPU"
GPU = "GPU"
MEMORY = "memory"
RAY_OWN_RESOURCES = frozenset({CPU, GPU, MEMORY})

# aegis's resources. Nodes carry them; an execution's bundle asks for them.
EXECUTOR = "aegis/executor"  # executor slots: how many containers a node may run at once
ORCHESTRATOR = "aegis/orchestrator"  # marks a node that hosts the control plane
DISK = "aegis/disk_gb"
TAG_PREFIX = "aegis/tag/"
# What a bundle asks of each required tag; a node has 1 of each of its tags, so at most
# 1 / TAG_AMOUNT = 1000 tagged executions fit on a node at once (max_containers is capped there).
TAG_AMOUNT = 0.001

# Labels: descriptive metadata Ray does not consume (ray-facts.md), set on every node.
LABEL_NODE_ID = "aegis/node-id"
LABEL_ROLE = "aegis/role"
LABEL_REGION = "aegis/region"
# Set on executor nodes whose NodeConfig names a Docker network other than the default bridge.
LABEL_DOCKER_NETWORK = "aegis/docker-network"


def tag_resource(tag: str) -> str:
    """The Ray resource name that stands for a node tag."""
    return TAG_PREFIX + tag


def placement_group_name(execution_id: object, attempt: int) -> str:
    """Name of an attempt's placement group (regenerated groups add ".N")."""
    return f"aegis-{execution_id}-a{attempt}"


def node_agent_name(node_id: str) -> str:
    """Name of the long-lived node agent actor of one aegis node (in RAY_NAMESPACE)."""
    return f"aegis-node-agent:{node_id}"


# --- Temporal -----------------------------------------------------------------------------

# The default task queue of the execution workflows (Settings and the NodeConfig may name another).
TASK_QUEUE = "aegis-executions"


def workflow_id(execution_id: object) -> str:
    """Temporal workflow id of an execution: derived, so it can always be found again."""
    return f"aegis-execution-{execution_id}"


# The execution workflow's type name (one workflow per execution).
WORKFLOW_NAME = "aegis.execution"

# Search attributes (type Keyword) of execution workflows, so that the Temporal UI finds
# "agent X on node Y" (`AegisAgent="hello-agent" AND AegisNode="n1"`). `aegis up` registers
# them; the API sets the agent and tenant at start, the workflow the node once placed.
SEARCH_AGENT = "AegisAgent"
SEARCH_TENANT = "AegisTenant"
SEARCH_NODE = "AegisNode"
SEARCH_ATTRIBUTES = (SEARCH_AGENT, SEARCH_TENANT, SEARCH_NODE)
# The signal an attempt's activity sends its workflow once the attempt is placed (node id).
PLACED_SIGNAL = "placed"
