"""FastAPI dependencies shared by the route modules: the control plane and who is calling."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from aegis_ray.api.auth import Caller, bearer_secret
from aegis_ray.api.control_plane import ADMINS, JOINERS, NODES, USERS, ControlPlane


def plane(request: Request) -> ControlPlane:
    p: ControlPlane = request.app.state.plane
    return p


async def _verified(request: Request, roles: tuple[str, ...]) -> Caller:
    secret = bearer_secret(request.headers.get("authorization"))
    return await plane(request).authenticate(secret, roles)


async def caller(request: Request) -> Caller:
    """A user of the execution API (admin or user token)."""
    return await _verified(request, USERS)


async def admin(request: Request) -> Caller:
    return await _verified(request, ADMINS)


async def joiner(request: Request) -> Caller:
    """A node joining the cluster: only a join token will do."""
    return await _verified(request, JOINERS)


async def node(request: Request) -> Caller:
    """A node reporting in: its join token, or an admin."""
    return await _verified(request, NODES)


CallerDep = Annotated[Caller, Depends(caller)]
AdminDep = Annotated[Caller, Depends(admin)]
JoinerDep = Annotated[Caller, Depends(joiner)]
NodeDep = Annotated[Caller, Depends(node)]
PlaneDep = Annotated[ControlPlane, Depends(plane)]
