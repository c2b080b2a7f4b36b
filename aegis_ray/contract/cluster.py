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
    ray_node_id: str | None = Field(default=None, description="admin tokens only")
    role: str
    status: str
    tags: list[str]
    total: Capacity
    free: Capacity
    registered: bool
    region: str | None = None
    version: str | None = Field(default=None, description="admin tokens only")
    address: str | None = Field(default=None, description="admin tokens only")
    last_heartbeat: Timestamp | None = Field(default=None, description="admin tokens only")
    executions: int | None = Field(
        default=None,
        description="executions placed there (list); a non-admin token counts its own only",
    )
    leases: list[str] = Field(
        default_factory=list,
        description="singleton leases the orchestrator holds (reconciler); admin tokens only",
    )


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
    """What a joining node's raylet needs: the GCS address and Ray's auth (the token only if
    the node said it does not have it yet)."""

    address: str
    auth_mode: str
    token: str | None = None


class Registration(Body):
    node: NodeRecord
    ray: RayJoinInfo
    credential: str | None = Field(
        default=None,
        description="the node's own credential (first registration with a join token): its"
        " heartbeats and re-registrations use it; shown once, kept 0600 on the node",
    )


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


# Bounds of what a caller may store (issue 12): refused with 422 naming the field.
TENANT_ID = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
MAX_DESCRIPTION = 200
NODE_ID = r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$"


class Token(Body):
    token: str = Field(description="the secret: shown once, never stored in clear")
    id: str | None = Field(default=None, description="the token's id (list, revoke)")
    role: Literal["join", "user"]
    tenant_id: str
    ttl_s: float | None
    node_id: str | None = None
    node_type: str | None = None


class TokenRequest(BaseModel):
    """A new token. `join` tokens are for one node (`node_id`, optionally its `node_type`),
    used once, and live at most the operator's maximum (15 minutes unless configured); `ttl_s`
    unset gives the role's default (join 600 s, user 3600 s); a token without expiry needs
    `eternal: true` (user tokens only)."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["join", "user"] = "join"
    ttl_s: float | None = Field(default=None, gt=0, le=10 * 365 * 86400)
    eternal: bool = False
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    tenant_id: str | None = Field(default=None, pattern=TENANT_ID)
    node_id: str | None = Field(default=None, pattern=NODE_ID)
    node_type: Literal["edge", "hybrid", "orchestrator"] | None = None


class TokenInfo(Body):
    """A token as `aegis token list` shows it: never its secret."""

    id: str
    role: str
    tenant_id: str
    description: str
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    node_id: str | None = None
    node_type: str | None = None
    node_types: list[str] | None = None
    redeemed_at: Timestamp | None = None


class TokenPage(Body):
    items: list[TokenInfo]


class RevokedToken(Body):
    id: str
    revoked: bool = Field(description="false: it had been revoked already")


class AdminToken(Body):
    """`aegis token rotate-admin`: the new admin token; every earlier one is revoked."""

    token: str
    id: str
    tenant_id: str


class JoinSecretRequest(BaseModel):
    """Replace the cluster join secret (`ray up`): the new secret, and the node types whose
    node ids (`<type>-...`) it admits (else those of the secret it replaces)."""

    model_config = ConfigDict(extra="forbid")
    secret: str = Field(min_length=16, max_length=256)
    node_types: list[Annotated[str, Field(pattern=NODE_ID)]] | None = Field(
        default=None, max_length=64
    )


class NodeIdentity(BaseModel):
    """What a node says about itself when it registers (the seed's NodeIdentity)."""

    model_config = ConfigDict(extra="forbid")
    node: NodeSection
    ray_node_id: str | None = Field(default=None, max_length=128)
    address: str | None = Field(default=None, max_length=255)
    version: str = Field(default=__version__, max_length=64)
    # The node has Ray's token already (an earlier registration, or its own file): the answer
    # then leaves it out, so it crosses the network no more often than it must.
    has_ray_token: bool = False


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
