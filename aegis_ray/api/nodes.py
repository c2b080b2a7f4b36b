"""Node registry routes: join tokens, registration, listing, drain, cluster status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from aegis_ray import __version__
from aegis_ray.api.context import Connections
from aegis_ray.api.deps import AdminDep, CallerDep, ConnsDep, JoinerDep
from aegis_ray.cluster.ray_state import ClusterView, live_cluster
from aegis_ray.models.node import NodeSection
from aegis_ray.placement.fit import Capacity, NodeFacts


class NodeIdentity(BaseModel):
    """What a node says about itself when it registers (the seed's NodeIdentity)."""

    model_config = ConfigDict(extra="forbid")
    node: NodeSection
    ray_node_id: str | None = None
    address: str | None = None
    version: str = __version__


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["join", "user"] = "join"
    ttl_s: float | None = Field(default=3600.0, gt=0, le=365 * 86400)
    description: str = ""
    tenant_id: str | None = None


async def live_view(c: Connections) -> ClusterView:
    """Ray's live nodes merged with the registry (draining, down, gone)."""
    return await live_cluster(await c.nodes())


def node_dict(n: NodeFacts, record: Any = None) -> dict[str, Any]:
    def cap(c: Capacity) -> dict[str, Any]:
        return {
            "cpu_millis": c.cpu_millis,
            "memory_bytes": c.memory_bytes,
            "disk_bytes": c.disk_bytes,
            "gpu": c.gpu,
            "slots": c.slots,
        }

    out: dict[str, Any] = {
        "node_id": n.node_id,
        "ray_node_id": n.ray_node_id,
        "role": n.role,
        "status": n.status,
        "tags": sorted(n.tags),
        "total": cap(n.total),
        "free": cap(n.free),
        "registered": record is not None,
    }
    if record is not None:
        out |= {
            "region": record.region,
            "version": record.version,
            "address": record.address,
            "last_heartbeat": record.last_heartbeat.isoformat() if record.last_heartbeat else None,
        }
    return out


def _ray_join_info(c: Connections) -> dict[str, Any]:
    import ray

    info: dict[str, Any] = {
        "address": ray.get_runtime_context().gcs_address,
        "auth_mode": c.config.ray_auth_mode,
    }
    if c.config.ray_auth_mode == "token" and c.config.ray_token_path:
        info["token"] = Path(c.config.ray_token_path).read_text().strip()
    return info


def install_node_routes(app: FastAPI) -> None:
    @app.get("/v1/nodes", tags=["nodes"])
    async def list_nodes(who: CallerDep, c: ConnsDep) -> dict[str, Any]:
        view = await live_view(c)
        records = {r.id: r for r in await (await c.nodes()).list()}
        placed = await (await c.executions()).placed_per_node()
        items = [
            node_dict(n, records.get(n.node_id)) | {"executions": placed.get(n.node_id, 0)}
            for n in view.nodes
        ]
        return {"items": items, "implicit_head": view.implicit_head}

    @app.get("/v1/nodes/{node_id}", tags=["nodes"])
    async def get_node(node_id: str, who: CallerDep, c: ConnsDep) -> dict[str, Any]:
        view = await live_view(c)
        record = await (await c.nodes()).get(node_id)
        for n in view.nodes:
            if n.node_id == node_id:
                return node_dict(n, record)
        raise HTTPException(404, {"error": "not_found", "message": f"no node {node_id!r}"})

    @app.post("/v1/nodes/register", tags=["nodes"])
    async def register(
        identity: Annotated[NodeIdentity, Body()], who: JoinerDep, c: ConnsDep
    ) -> dict[str, Any]:
        """A node joining: record its identity, hand it what its raylet needs to join Ray."""
        n = identity.node
        resources = n.resources.model_dump() if n.resources else {}
        store = await c.nodes()
        existing = await store.get(n.id)
        status = existing.status if existing and existing.status == "draining" else "ready"
        record = await store.upsert(
            {
                "id": n.id,
                "type": n.type.value,
                "region": n.region,
                "tags": list(n.tags),
                "resources": resources,
                "ray_node_id": identity.ray_node_id,
                "address": identity.address,
                "version": identity.version,
                "status": status,
                "labels": {"tenant": who.tenant_id},
            }
        )
        return {"node": record.to_dict(), "ray": _ray_join_info(c)}

    @app.post("/v1/nodes/{node_id}/drain", tags=["nodes"])
    async def drain(node_id: str, who: AdminDep, c: ConnsDep) -> dict[str, Any]:
        return await _set_status(c, node_id, "draining")

    @app.post("/v1/nodes/{node_id}/undrain", tags=["nodes"])
    async def undrain(node_id: str, who: AdminDep, c: ConnsDep) -> dict[str, Any]:
        return await _set_status(c, node_id, "ready")

    @app.get("/v1/cluster/status", tags=["nodes"])
    async def cluster_status(who: CallerDep, c: ConnsDep) -> dict[str, Any]:
        view = await live_view(c)
        counts: dict[str, int] = {}
        for n in view.nodes:
            counts[n.status] = counts.get(n.status, 0) + 1
        return {
            "nodes": counts,
            "orchestrators": sum(1 for n in view.nodes if n.role == "orchestrator"),
            "implicit_head": view.implicit_head,
            "version": __version__,
        }

    @app.post("/v1/tokens", status_code=201, tags=["nodes"])
    async def create_token(
        req: Annotated[TokenRequest, Body()], who: AdminDep, c: ConnsDep
    ) -> dict[str, Any]:
        """Issue a token: `join` for nodes joining the cluster, `user` for the execution API."""
        tenant = req.tenant_id or who.tenant_id
        secret = await (await c.tokens()).create(
            tenant_id=tenant, role=req.role, description=req.description, ttl_s=req.ttl_s
        )
        return {"token": secret, "role": req.role, "tenant_id": tenant, "ttl_s": req.ttl_s}


async def _set_status(c: Connections, node_id: str, status: str) -> dict[str, Any]:
    store = await c.nodes()
    if not await store.set_status(node_id, status):
        raise HTTPException(
            404, {"error": "not_found", "message": f"no registered node {node_id!r}"}
        )
    record = await store.get(node_id)
    return record.to_dict() if record else {"id": node_id, "status": status}
