"""The cluster as the API shows it: nodes, their registry rows, status, health and tokens."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aegis_ray import __version__
from aegis_ray.contract.body import Body, Timestamp
from aegis_ray.core.models.node import NodeSection
from aegis_ray.core.placement.dimensions import Resources

# One amount per resource dimension, keyed by the dimension table's field names (cpu_millis,
# memory_bytes, disk_bytes, gpu, slots: how many more containers the node may run), so a new
# dimension needs no change here.
Capacity = Annotated[
    dict[str, int],
    Field(
        json_schema_extra={
            "properties": {name: {"type": "integer"} for name in Resources._fields},
            "required": list(Resources._fields),
        }
    ),
]


class Node(Body):
    """A node as placement sees it: Ray's live view merged with the registry."""

    node_id: str
    ray_node_id: str | None
    role: str
    status: str
    tags: list[str]
    total: Capacity
    free: Capacity
    registered: bool
    region: str | None = None
    version: str | None = None
    address: str | None = None
    last_heartbeat: Timestamp | None = None
    executions: int | None = Field(default=None, description="executions placed there (list)")


class NodePage(Body):
    items: list[Node]
    implicit_head: bool


class NodeRecord(Body):
    """A node's registry row."""

    id: str
    type: str | None
    region: str | None
    tags: list[str]
    resources: dict[str, Any]
    ray_node_id: str | None
    address: str | None
    version: str | None
    status: str | None
    registered_at: Timestamp
    last_heartbeat: Timestamp | None
    labels: dict[str, str]


class RayJoinInfo(Body):
    """What a joining node's raylet needs: the GCS address and Ray's auth."""

    address: str
    auth_mode: str
    token: str | None = None


class Registration(Body):
    node: NodeRecord
    ray: RayJoinInfo


class ClusterStatus(Body):
    nodes: dict[str, int] = Field(description="node count per status")
    orchestrators: int
    implicit_head: bool
    version: str


class Health(Body):
    """`ok` when every dependency answers; each check is `ok` or why not."""

    status: Literal["ok", "degraded"]
    version: str
    database: str | None = None
    temporal: str | None = None
    worker: str | None = None
    secrets: str | None = Field(default=None, description="OpenBao: ok, sealed or unavailable")


class Token(Body):
    token: str = Field(description="the secret: shown once, never stored in clear")
    role: Literal["join", "user"]
    tenant_id: str
    ttl_s: float | None


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["join", "user"] = "join"
    ttl_s: float | None = Field(default=3600.0, gt=0, le=365 * 86400)
    description: str = ""
    tenant_id: str | None = None


class NodeIdentity(BaseModel):
    """What a node says about itself when it registers (the seed's NodeIdentity)."""

    model_config = ConfigDict(extra="forbid")
    node: NodeSection
    ray_node_id: str | None = None
    address: str | None = None
    version: str = __version__


class ClusterEvent(Body):
    """A row of the cluster feed: a node's status change (`kind` node: from_state and
    to_state are node statuses) or an execution's state change (`kind` execution)."""

    id: int
    ts: Timestamp
    kind: Literal["node", "execution"]
    tenant_id: str | None = Field(description="the execution's tenant; null for node events")
    node_id: str | None
    execution_id: str | None
    name: str | None = Field(description="the execution's agent name")
    from_state: str | None
    to_state: str | None
    message: str


class ClusterEventPage(Body):
    items: list[ClusterEvent]


class ClusterWatchItem(Body):
    """One item of the cluster feed's stream (NDJSON line or gRPC message)."""

    event: ClusterEvent

    @property
    def item(self) -> ClusterEvent:
        return self.event
