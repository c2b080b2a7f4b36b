"""The Temporal worker of the execution workflows, and the reconciler beside it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from aegis_ray.adapters.openbao.store import SecretStore
from aegis_ray.adapters.postgres.executions import ExecutionStore
from aegis_ray.adapters.postgres.nodes import NodeStore
from aegis_ray.settings import Settings
from aegis_ray.workflows.activities import ExecutionActivities, Limits
from aegis_ray.workflows.execution import ExecutionWorkflow
from aegis_ray.workflows.reconciler import LeasedReconciler


@dataclass
class RunningWorker:
    worker: asyncio.Task[None]
    reconciler: asyncio.Task[None]

    def check(self) -> None:
        """Raise if the worker stopped (its replica is then restarted by Serve)."""
        if self.worker.done():
            raise RuntimeError(f"Temporal worker stopped: {self.worker.exception()!r}")

    async def status(self) -> str:
        """ "ok" while the worker runs, else why it stopped (for /health)."""
        if not self.worker.done():
            return "ok"
        return f"stopped: {self.worker.exception()!r}"[:300]


async def start_worker(
    pool: asyncpg.Pool,
    client: Client,
    *,
    task_queue: str,
    node_id: str,
    lease_ttl_s: float,
    secrets: SecretStore | None = None,
) -> RunningWorker:
    """Run the worker and the reconciler (it sweeps while this process holds its lease) as
    tasks of the running loop; `node_id` names this orchestrator in the lease."""
    settings = Settings()
    limits = Limits(
        store_outage_s=settings.store_outage_s,
        log_line_max_bytes=settings.log_line_max_bytes,
        log_max_bytes=settings.log_max_bytes,
    )
    activities = ExecutionActivities(
        ExecutionStore(pool), NodeStore(pool), client, secrets=secrets, limits=limits
    )
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[ExecutionWorkflow],
        activities=activities.all(),
        max_concurrent_activities=1000,
        # Cancellation reaches an activity with its next heartbeat: keep that prompt.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
    )
    loop = asyncio.get_running_loop()
    reconciler = LeasedReconciler(pool, client, node_id=node_id, ttl_s=lease_ttl_s)
    return RunningWorker(
        worker=loop.create_task(worker.run()), reconciler=loop.create_task(reconciler.run_forever())
    )
