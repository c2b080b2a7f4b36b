"""Node registry routes: join tokens, registration, heartbeats, listing, drain, cluster status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI

from aegis_ray.api.deps import AdminDep, CallerDep, JoinerDep, NodeDep, PlaneDep
from aegis_ray.api.openapi import refusals
from aegis_ray.contract.cluster import (
    ClusterStatus,
    Node,
    NodeIdentity,
    NodePage,
    NodeRecord,
    Registration,
    Token,
    TokenRequest,
)
from aegis_ray.core.models.node import NodeStatus


def install_node_routes(app: FastAPI) -> None:
    common: dict[str, Any] = {"tags": ["nodes"], "response_model_exclude_unset": True}

    @app.get("/v1/nodes", response_model=NodePage, responses=refusals(), **common)
    async def list_nodes(who: CallerDep, p: PlaneDep) -> Any:
        """Nodes of the cluster with their role, tags, free capacity and executions."""
        return await p.list_nodes()

    @app.get("/v1/nodes/{node_id}", response_model=Node, responses=refusals(404), **common)
    async def get_node(node_id: str, who: CallerDep, p: PlaneDep) -> Any:
        return await p.get_node(node_id)

    @app.post(
        "/v1/nodes/register", response_model=Registration, responses=refusals(), **common
    )
    async def register(
        identity: Annotated[NodeIdentity, Body()], who: JoinerDep, p: PlaneDep
    ) -> Any:
        """A node joining: record its identity, hand it what its raylet needs to join Ray."""
        return await p.register(who, identity)

    @app.post(
        "/v1/nodes/{node_id}/heartbeat",
        response_model=NodeRecord,
        responses=refusals(404),
        **common,
    )
    async def heartbeat(node_id: str, who: NodeDep, p: PlaneDep) -> Any:
        """A node saying it is alive (join or admin token); answers with its registry row."""
        return await p.heartbeat(node_id)

    @app.post(
        "/v1/nodes/{node_id}/drain", response_model=NodeRecord, responses=refusals(404), **common
    )
    async def drain(node_id: str, who: AdminDep, p: PlaneDep) -> Any:
        """Give a node no new work; what runs there finishes."""
        return await p.set_node_status(node_id, NodeStatus.DRAINING)

    @app.post(
        "/v1/nodes/{node_id}/undrain",
        response_model=NodeRecord,
        responses=refusals(404),
        **common,
    )
    async def undrain(node_id: str, who: AdminDep, p: PlaneDep) -> Any:
        return await p.set_node_status(node_id, NodeStatus.READY)


    @app.get("/v1/cluster/status", response_model=ClusterStatus, responses=refusals(), **common)
    async def cluster_status(who: CallerDep, p: PlaneDep) -> Any:
        return await p.cluster_status()

    @app.post(
        "/v1/tokens", status_code=201, response_model=Token, responses=refusals(), **common
    )
    async def create_token(
        req: Annotated[TokenRequest, Body()], who: AdminDep, p: PlaneDep
    ) -> Any:
        """Issue a token: `join` for nodes joining the cluster, `user` for the execution API."""
        return await p.create_token(who, req)
