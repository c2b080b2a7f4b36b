"""The control-plane Ray Serve application: REST and gRPC ingress plus the Temporal worker.

`serve deploy serve/aegis.yaml` (or `aegis up`, which deploys the same file) brings up both.
REST arrives through Serve's HTTP proxy (8080), gRPC through its gRPC proxy (50051); both reach
the same AegisAPI replica and the same `ControlPlane` operations.
Replicas ask for a sliver of the orchestrator resource and no CPU, so they only ever run on
orchestrator or hybrid nodes and never take capacity from agent containers.
"""

from __future__ import annotations

import asyncio
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
        from temporalio.client import Client
        from temporalio.worker import Worker

        from aegis_ray.adapters.postgres.db import connect
        from aegis_ray.adapters.postgres.executions import ExecutionStore
        from aegis_ray.adapters.postgres.nodes import NodeStore
        from aegis_ray.workflows.activities import ExecutionActivities
        from aegis_ray.workflows.execution import ExecutionWorkflow
        from aegis_ray.workflows.reconciler import Reconciler

        self.config = ControlPlaneConfig.from_args(args)
        pool = await connect(self.config.database_url)
        client = await Client.connect(
            self.config.temporal_address, namespace=self.config.temporal_namespace
        )
        activities = ExecutionActivities(ExecutionStore(pool), NodeStore(pool))
        from datetime import timedelta

        self.worker = Worker(
            client,
            task_queue=self.config.task_queue,
            workflows=[ExecutionWorkflow],
            activities=activities.all(),
            max_concurrent_activities=200,
            # Cancellation reaches an activity with its next heartbeat: keep that prompt.
            max_heartbeat_throttle_interval=timedelta(seconds=1),
            default_heartbeat_throttle_interval=timedelta(seconds=1),
        )
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self.worker.run())
        reconciler = Reconciler(ExecutionStore(pool), NodeStore(pool), client)
        self.reconciler = loop.create_task(reconciler.run_forever())

    async def check_health(self) -> None:
        if self.task.done():
            exc = self.task.exception()
            raise RuntimeError(f"Temporal worker stopped: {exc!r}")

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
