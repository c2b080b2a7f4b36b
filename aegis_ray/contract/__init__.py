"""The API contract: what the REST and gRPC APIs accept and answer, shared by server and clients.

- `errors`: the error vocabulary (name -> HTTP status, gRPC code) and the error body.
- `executions`: executions, attempts, events, log lines, watch items, plans.
- `cluster`: nodes, cluster status, health, tokens, node registration, the cluster feed.

Pure: pydantic over the core's vocabularies (execution states, node sections); the server
(aegis_ray.api) and the client (aegis_ray.sdk) both import it, neither imports the other.
"""

from aegis_ray.contract.cluster import (
    AdminToken,
    Capacity,
    ClusterEvent,
    ClusterEventPage,
    ClusterStatus,
    ClusterWatchItem,
    Health,
    JoinSecretRequest,
    Node,
    NodeIdentity,
    NodePage,
    NodeRecord,
    RayJoinInfo,
    Registration,
    RevokedToken,
    Token,
    TokenInfo,
    TokenPage,
    TokenRequest,
)
from aegis_ray.contract.errors import (
    ERRORS,
    GRPC_ERROR_METADATA,
    GRPC_TO_HTTP,
    ErrorBody,
    ErrorName,
    Problem,
)
from aegis_ray.contract.executions import (
    MANIFEST_MEDIA_TYPES,
    Attempt,
    Cancelled,
    End,
    Event,
    EventPage,
    Execution,
    ExecutionPage,
    FollowEnd,
    LogLine,
    LogPage,
    NodePlan,
    PlanReason,
    PlanResult,
    WatchItem,
)

__all__ = [
    "AdminToken",
    "JoinSecretRequest",
    "RevokedToken",
    "ERRORS",
    "GRPC_ERROR_METADATA",
    "GRPC_TO_HTTP",
    "MANIFEST_MEDIA_TYPES",
    "Attempt",
    "Cancelled",
    "Capacity",
    "ClusterEvent",
    "ClusterEventPage",
    "ClusterStatus",
    "ClusterWatchItem",
    "End",
    "ErrorBody",
    "ErrorName",
    "Event",
    "EventPage",
    "Execution",
    "ExecutionPage",
    "FollowEnd",
    "Health",
    "LogLine",
    "LogPage",
    "Node",
    "NodeIdentity",
    "NodePage",
    "NodePlan",
    "NodeRecord",
    "PlanReason",
    "PlanResult",
    "Problem",
    "RayJoinInfo",
    "Registration",
    "Token",
    "TokenInfo",
    "TokenPage",
    "TokenRequest",
    "WatchItem",
]
