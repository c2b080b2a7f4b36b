"""The control-plane Ray Serve application: REST and gRPC ingress plus the Temporal worker.

`serve deploy serve/aegis.yaml` (or `aegis up`, which deploys the same file) brings it up: one
replica (one process) serving REST through Serve's HTTP proxy (8080) and gRPC through its gRPC
proxy (50051) over the same `ControlPlane`, and running the Temporal worker of the execution
workflows and the reconciler beside them. One process instead of two saves ~150 MiB on every
orchestrator, and lets a submission hand its workflow's first task straight to the local worker
(Temporal's eager workflow start). Serve restarts the replica when `check_health` fails.
The replica asks for a sliver of the orchestrator resource and no CPU, so it only ever runs on
an orchestrator or hybrid node and never takes capacity from agent containers.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from aegis_ray.adapters.ray.cluster_state import control_plane_resources, this_node_id
from aegis_ray.api.auth import TokenCache
from aegis_ray.api.context import Connections, ControlPlaneConfig
from aegis_ray.api.control_plane import ControlPlane
from aegis_ray.api.grpc_api import GrpcMethods
from aegis_ray.api.rest import create_app
from aegis_ray.workflows.worker import start_worker

# Unary calls and open watch streams together; each running execution also holds one of the
# worker's activity slots (not a request slot).
MAX_ONGOING_REQUESTS = 200


@serve.deployment(name="AegisAPI", num_replicas=1, max_ongoing_requests=MAX_ONGOING_REQUESTS)
@serve.ingress()
class AegisAPI(GrpcMethods):
    """REST routes (the FastAPI app), gRPC methods (GrpcMethods) and the Temporal worker."""

    async def __init__(self, args: dict[str, Any]) -> None:
        self.config = ControlPlaneConfig.from_args(args)
        conns = Connections(self.config)
        c = self.config
        # The API's own Temporal client runs the worker: submissions can then start workflows
        # eagerly on it.
        self.worker = await start_worker(
            await conns.pool(),
            await conns.temporal(),
            task_queue=c.task_queue,
            secrets=conns.secret_store,
            node_id=this_node_id(),
            lease_ttl_s=c.lease_ttl_s,
        )
        self.plane = ControlPlane(conns, TokenCache(), self.worker)

    async def check_health(self) -> None:
        self.worker.check()

    def __serve_build_asgi_app__(self) -> Any:
        # Built in the replica, so that the app's state is this replica's own connections.
        app = create_app()
        app.state.plane = self.plane
        return app


def build_app(args: dict[str, Any], *, replicas: int = 1) -> Any:
    """Serve application builder (import path `aegis_ray.api.deployment:build_app`).

    `replicas`: one per orchestrator node (never two on one: a second would add no
    availability, and the proxies follow the replicas)."""
    config = ControlPlaneConfig.from_args(args)
    options = {"num_cpus": 0, "resources": control_plane_resources(config.implicit_head)}
    return AegisAPI.options(
        ray_actor_options=options, num_replicas=replicas, max_replicas_per_node=1
    ).bind(args)
