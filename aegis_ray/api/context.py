"""Connections a control-plane replica holds: PostgreSQL pool, Temporal client, OpenBao.

Each is opened lazily and reopened after a failure, so a replica started while PostgreSQL,
Temporal or OpenBao is down keeps serving (503 for what needs them) and recovers on its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from aegis_ray.adapters.openbao.client import OpenBaoAccess, SecretsUnavailable
from aegis_ray.adapters.openbao.store import SecretStore
from aegis_ray.adapters.postgres.cluster_events import ClusterEventStore
from aegis_ray.adapters.postgres.db import StoreUnavailable, connect
from aegis_ray.adapters.postgres.executions import ExecutionStore
from aegis_ray.adapters.postgres.leases import LeaseStore
from aegis_ray.adapters.postgres.nodes import NodeStore
from aegis_ray.adapters.postgres.tokens import TokenStore
from aegis_ray.core.naming import SEARCH_ATTRIBUTES, TASK_QUEUE


class TemporalUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class ControlPlaneConfig:
    """What every control-plane replica needs to know; the args of the Serve application."""

    database_url: str
    temporal_address: str
    temporal_namespace: str = "default"
    task_queue: str = TASK_QUEUE
    implicit_head: bool = False
    # Handed to nodes that join with a valid join token, so that their raylet can authenticate.
    ray_auth_mode: str = "disabled"
    ray_token_path: str | None = None
    # Issue 12's limits (api/limits.py Limits' fields; `aegis up`: Settings.api_limits).
    limits: dict[str, float] = field(default_factory=dict)
    # OpenBao and the control plane's AppRole (OpenBaoAccess's fields). Only where the secret id
    # is (a private file, or a variable of the replica's environment) travels here: these args
    # are kept in Ray's GCS.
    openbao: dict[str, Any] | None = None
    # Connections this replica's pool may hold (each orchestrator runs one replica).
    database_pool_size: int = 10
    # The reconciler's lease time to live (see workflows/reconciler.py).
    lease_ttl_s: float = 15.0

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> ControlPlaneConfig:
        known = {k: v for k, v in args.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(args) - set(known))
        if unknown:
            raise ValueError(f"unknown control-plane args: {', '.join(unknown)}")
        return cls(**known)


class Connections:
    def __init__(self, config: ControlPlaneConfig) -> None:
        self.config = config
        self._pool: Any = None
        self._temporal: Client | None = None
        self._search_attributes: bool | None = None
        self._lock = asyncio.Lock()
        access = OpenBaoAccess(**config.openbao) if config.openbao else None
        self.secret_store = SecretStore(access) if access is not None else None

    async def pool(self) -> Any:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await connect(
                        self.config.database_url, max_size=self.config.database_pool_size
                    )
        return self._pool

    async def executions(self) -> ExecutionStore:
        return ExecutionStore(await self.pool())

    async def tokens(self) -> TokenStore:
        return TokenStore(await self.pool())

    async def nodes(self) -> NodeStore:
        return NodeStore(await self.pool())

    async def leases(self) -> LeaseStore:
        return LeaseStore(await self.pool())

    async def cluster_events(self) -> ClusterEventStore:
        return ClusterEventStore(await self.pool())

    def secrets(self) -> SecretStore:
        if self.secret_store is None:
            raise SecretsUnavailable("this control plane has no OpenBao configured")
        return self.secret_store

    async def temporal(self) -> Client:
        if self._temporal is None:
            try:
                self._temporal = await asyncio.wait_for(
                    Client.connect(
                        self.config.temporal_address, namespace=self.config.temporal_namespace
                    ),
                    10,
                )
            except Exception as err:
                raise TemporalUnavailable(
                    f"Temporal not reachable at {self.config.temporal_address}: {err}"
                ) from err
        return self._temporal

    async def search_attributes(self) -> bool:
        """Whether the namespace has every aegis search attribute (naming.SEARCH_ATTRIBUTES):
        a workflow started with an unknown one would be refused. Asked once per replica."""
        if self._search_attributes is None:
            client = await self.temporal()
            try:
                known = await client.operator_service.list_search_attributes(
                    ListSearchAttributesRequest(namespace=self.config.temporal_namespace)
                )
            except Exception:  # an outage or no permission: asked again next time
                return False
            names = set(known.custom_attributes) | set(known.system_attributes)
            self._search_attributes = all(n in names for n in SEARCH_ATTRIBUTES)
        return self._search_attributes

    async def check(self) -> dict[str, str]:
        """Liveness of each dependency, for /health."""
        out: dict[str, str] = {}
        try:
            pool = await self.pool()
            await asyncio.wait_for(pool.fetchval("SELECT 1"), 3)
            out["database"] = "ok"
        except (TimeoutError, StoreUnavailable, OSError) as err:
            out["database"] = f"unavailable: {err}"
        except Exception as err:  # asyncpg raises many kinds when the server went away
            out["database"] = f"unavailable: {err}"
        try:
            client = await self.temporal()
            await asyncio.wait_for(client.service_client.check_health(), 3)
            out["temporal"] = "ok"
        except Exception as err:
            self._temporal = None
            out["temporal"] = f"unavailable: {err}"
        if self.secret_store is not None:
            out["secrets"] = await asyncio.to_thread(self.secret_store.health)
        return out
