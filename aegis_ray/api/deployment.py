"""The control-plane Ray Serve application: REST and gRPC ingress plus the Temporal worker.

`serve deploy serve/aegis.yaml` (or `aegis up`, which deploys the same file) brings up both.
REST arrives through Serve's HTTP proxy (8080), gRPC through its gRPC proxy (50051); both reach
the same AegisAPI replica and the same `ControlPlane` operations.
Replicas ask for a sliver of the orchestrator resource and no CPU, so they only ever run on
orchestrator or hybrid nodes and never take capacity from agent containers.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from aegis_ray.adapters.ray.cluster_state import control_plane_resources
from aegis_ray.api.auth import TokenCache
from aegis_ray.api.context import Connections, ControlPlaneConfig
from aegis_ray.api.control_plane import ControlPlane
from aegis_ray.api.grpc_api import GrpcMethods
from aegis_ray.api.rest import create_app


@serve.deployment(name="ExecutionWorker", num_replicas=1, max_ongoing_requests=8)
class ExecutionWorker:
    """Runs the Temporal worker for execution workflows inside a Serve replica.

    Serve restarts the replica when `check_health` fails, which restarts the worker.
    """

    async def __init__(self, args: dict[str, Any]) -> None:
        from aegis_ray.workflows.worker import start_worker

        self.config = ControlPlaneConfig.from_args(args)
        c = self.config
        self.running = await start_worker(
            c.database_url, c.temporal_address, c.temporal_namespace, c.task_queue
        )

    async def check_health(self) -> None:
        self.running.check()

    async def ping(self) -> str:
        await self.check_health()
        return "ok"


@serve.deployment(name="AegisAPI", num_replicas=1, max_ongoing_requests=200)
@serve.ingress()
class AegisAPI(GrpcMethods):
    """REST routes (the FastAPI app) and gRPC methods (GrpcMethods) over one ControlPlane."""

    def __init__(self, args: dict[str, Any], worker: DeploymentHandle) -> None:
        self.config = ControlPlaneConfig.from_args(args)
        self.plane = ControlPlane(Connections(self.config), TokenCache(), worker)

    def __serve_build_asgi_app__(self) -> Any:
        # Built in the replica, so that the app's state is this replica's own connections.
        app = create_app()
        app.state.plane = self.plane
        return app


def build_app(args: dict[str, Any]) -> Any:
    """Serve application builder (import path `aegis_ray.api.deployment:build_app`)."""
    config = ControlPlaneConfig.from_args(args)
    options = {"num_cpus": 0, "resources": control_plane_resources(config.implicit_head)}
    worker = ExecutionWorker.options(ray_actor_options=options).bind(args)
    return AegisAPI.options(ray_actor_options=options).bind(args, worker)
