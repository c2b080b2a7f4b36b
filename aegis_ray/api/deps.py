"""FastAPI dependencies shared by the route modules: the control plane and who is calling."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aegis_ray.api.auth import Caller
from aegis_ray.api.control_plane import ADMINS, JOINERS, NODES, USERS, ControlPlane

# Declares the scheme in OpenAPI (/docs has "Authorize"); the control plane gives the refusal,
# so a missing or malformed header gets the same 401 body as a wrong token.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="an API token: the admin token `aegis up` writes, or `aegis token create`",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def plane(request: Request) -> ControlPlane:
    p: ControlPlane = request.app.state.plane
    return p


async def _verified(request: Request, creds: Credentials, roles: tuple[str, ...]) -> Caller:
    secret = creds.credentials.strip() if creds else None
    return await plane(request).authenticate(secret or None, roles)


async def caller(request: Request, creds: Credentials) -> Caller:
    """A user of the execution API (admin or user token)."""
    return await _verified(request, creds, USERS)


async def admin(request: Request, creds: Credentials) -> Caller:
    return await _verified(request, creds, ADMINS)


async def joiner(request: Request, creds: Credentials) -> tuple[Caller, str]:
    """A node (re-)registering: a join token or the node's own credential, with the secret
    (a join token is spent by registering)."""
    who = await _verified(request, creds, JOINERS)
    assert creds is not None  # _verified refused a missing token
    return who, creds.credentials.strip()


async def node(request: Request, creds: Credentials) -> Caller:
    """A node reporting in: its own credential, or an admin."""
    return await _verified(request, creds, NODES)


CallerDep = Annotated[Caller, Depends(caller)]
AdminDep = Annotated[Caller, Depends(admin)]
JoinerDep = Annotated[tuple[Caller, str], Depends(joiner)]
NodeDep = Annotated[Caller, Depends(node)]
PlaneDep = Annotated[ControlPlane, Depends(plane)]
