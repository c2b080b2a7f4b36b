"""Node registry routes: join tokens, registration, heartbeats, listing, drain, cluster status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI

from aegis_ray.api.control_plane import NodeIdentity, TokenRequest
from aegis_ray.api.deps import AdminDep, CallerDep, JoinerDep, NodeDep, PlaneDep
from aegis_ray.core.models.node import NodeStatus


def install_node_routes(app: FastAPI) -> None:
    @app.get("/v1/nodes", tags=["nodes"])
    async def list_nodes(who: CallerDep, p: PlaneDep) -> dict[str, Any]:
        return await p.list_nodes()

    @app.get("/v1/nodes/{node_id}", tags=["nodes"])
    async def get_node(node_id: str, who: CallerDep, p: PlaneDep) -> dict[str, Any]:
        return await p.get_node(node_id)

    @app.post("/v1/nodes/register", tags=["nodes"])
    async def register(
        identity: Annotated[NodeIdentity, Body()], who: JoinerDep, p: PlaneDep
    ) -> dict[str, Any]:
        """A node joining: record its identity, hand it what its raylet needs to join Ray."""
        return await p.register(who, identity)

    @app.post("/v1/nodes/{node_id}/heartbeat", tags=["nodes"])
    async def heartbeat(node_id: str, who: NodeDep, p: PlaneDep) -> dict[str, Any]:
        """A node saying it is alive (join or admin token); answers with its registry row."""
        return await p.heartbeat(node_id)

    @app.post("/v1/nodes/{node_id}/drain", tags=["nodes"])
    async def drain(node_id: str, who: AdminDep, p: PlaneDep) -> dict[str, Any]:
        return await p.set_node_status(node_id, NodeStatus.DRAINING)

    @app.post("/v1/nodes/{node_id}/undrain", tags=["nodes"])
    async def undrain(node_id: str, who: AdminDep, p: PlaneDep) -> dict[str, Any]:
        return await p.set_node_status(node_id, NodeStatus.READY)

    @app.get("/v1/cluster/status", tags=["nodes"])
    async def cluster_status(who: CallerDep, p: PlaneDep) -> dict[str, Any]:
        return await p.cluster_status()

    @app.post("/v1/tokens", status_code=201, tags=["nodes"])
    async def create_token(
        req: Annotated[TokenRequest, Body()], who: AdminDep, p: PlaneDep
    ) -> dict[str, Any]:
        """Issue a token: `join` for nodes joining the cluster, `user` for the execution API."""
        return await p.create_token(who, req)
