"""Node registry routes: registration, heartbeats, listing, drain, cluster status, tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI, Query

from aegis_ray.api.deps import AdminDep, CallerDep, JoinerDep, NodeDep, PlaneDep
from aegis_ray.api.openapi import refusals
from aegis_ray.contract.cluster import (
    AdminToken,
    ClusterStatus,
    JoinSecretRequest,
    Node,
    NodeIdentity,
    NodePage,
    NodeRecord,
    Registration,
    RevokedToken,
    Token,
    TokenInfo,
    TokenPage,
    TokenRequest,
)
from aegis_ray.core.models.node import NodeStatus


def install_node_routes(app: FastAPI) -> None:
    common: dict[str, Any] = {"tags": ["nodes"], "response_model_exclude_unset": True}

    @app.get("/v1/nodes", response_model=NodePage, responses=refusals(), **common)
    async def list_nodes(who: CallerDep, p: PlaneDep) -> Any:
        """Nodes of the cluster with their role, tags, free capacity and executions (a
        non-admin: no addresses, versions or heartbeats, and only its own executions)."""
        return await p.list_nodes(who)

    @app.get("/v1/nodes/{node_id}", response_model=Node, responses=refusals(404), **common)
    async def get_node(node_id: str, who: CallerDep, p: PlaneDep) -> Any:
        return await p.get_node(who, node_id)

    @app.post(
        "/v1/nodes/register", response_model=Registration, responses=refusals(), **common
    )
    async def register(
        identity: Annotated[NodeIdentity, Body()], who: JoinerDep, p: PlaneDep
    ) -> Any:
        """A node joining (a join token for this node, used once: the answer carries the node's
        own credential) or re-registering (that credential): record its identity, hand it what
        its raylet needs to join Ray."""
        caller, secret = who
        return await p.register(caller, secret, identity)

    @app.post(
        "/v1/nodes/{node_id}/heartbeat",
        response_model=NodeRecord,
        responses=refusals(404),
        **common,
    )
    async def heartbeat(node_id: str, who: NodeDep, p: PlaneDep) -> Any:
        """A node saying it is alive (its own credential, or an admin token); answers with its
        registry row."""
        return await p.heartbeat(who, node_id)

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
        """Issue a token: `join` for one node joining the cluster once, `user` for the
        execution API."""
        return await p.create_token(who, req)

    @app.get("/v1/tokens", response_model=TokenPage, responses=refusals(), **common)
    async def list_tokens(
        who: AdminDep, p: PlaneDep, revoked: Annotated[bool, Query()] = False
    ) -> Any:
        """Every token's id, role, tenant, node, expiry and state; never a secret (admin)."""
        return await p.list_tokens(who, include_revoked=revoked)

    @app.post(
        "/v1/tokens/{token_id}/revoke",
        response_model=RevokedToken,
        responses=refusals(404),
        **common,
    )
    async def revoke_token(token_id: str, who: AdminDep, p: PlaneDep) -> Any:
        """Revoke a token: it stops working on every orchestrator within a second."""
        return await p.revoke_token(who, token_id)

    @app.post(
        "/v1/tokens/rotate-admin", response_model=AdminToken, responses=refusals(), **common
    )
    async def rotate_admin(who: AdminDep, p: PlaneDep) -> Any:
        """A new admin token; every earlier admin token of the tenant stops working."""
        return await p.rotate_admin(who)

    @app.post(
        "/v1/tokens/join-secret", response_model=TokenInfo, responses=refusals(), **common
    )
    async def rotate_join_secret(
        req: Annotated[JoinSecretRequest, Body()], who: AdminDep, p: PlaneDep
    ) -> Any:
        """Replace the cluster join secret (`ray up`'s edges): the earlier ones are revoked."""
        return await p.rotate_join_secret(who, req)
