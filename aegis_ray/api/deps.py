"""FastAPI dependencies shared by the route modules: connections and who is calling."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from aegis_ray.api.auth import Caller, TokenCache, bearer
from aegis_ray.api.context import Connections


def conns(request: Request) -> Connections:
    c: Connections = request.app.state.connections
    return c


async def _verified(request: Request, roles: tuple[str, ...]) -> Caller:
    secret = bearer(request)
    cache: TokenCache = request.app.state.token_cache
    who = cache.get(secret)
    if who is None:
        record = await (await conns(request).tokens()).verify(secret)
        if record is None:
            raise HTTPException(
                401, {"error": "unauthenticated", "message": "invalid, expired or revoked token"}
            )
        who = Caller(tenant_id=record.tenant_id, role=record.role)
        cache.put(secret, who)
    if who.role not in roles:
        raise HTTPException(
            403,
            {
                "error": "forbidden",
                "message": f"a {who.role} token cannot do this; needs one of: {', '.join(roles)}",
            },
        )
    return who


async def caller(request: Request) -> Caller:
    """A user of the execution API (admin or user token)."""
    return await _verified(request, ("admin", "user"))


async def admin(request: Request) -> Caller:
    return await _verified(request, ("admin",))


async def joiner(request: Request) -> Caller:
    """A node joining the cluster: only a join token will do."""
    return await _verified(request, ("join",))


CallerDep = Annotated[Caller, Depends(caller)]
AdminDep = Annotated[Caller, Depends(admin)]
JoinerDep = Annotated[Caller, Depends(joiner)]
ConnsDep = Annotated[Connections, Depends(conns)]
