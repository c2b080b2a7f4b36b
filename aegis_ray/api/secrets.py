"""Secret routes: put, list, get and delete the caller's tenant's secrets (values write-only)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request

from aegis_ray.api.deps import CallerDep, PlaneDep
from aegis_ray.api.errors import ApiProblem
from aegis_ray.api.openapi import SECRET_BODY, refusals
from aegis_ray.contract.secrets import Secret, SecretDeleted, SecretPage


async def _json(request: Request) -> Any:
    # Read here, not by FastAPI: its validation errors echo the input, which holds values.
    try:
        return json.loads(await request.body())
    except ValueError:
        raise ApiProblem(
            "bad_request", 'body: not JSON; send {"data": {"KEY": "VALUE", ...}}'
        ) from None


def install_secret_routes(app: FastAPI) -> None:
    common: dict[str, Any] = {"tags": ["secrets"], "response_model_exclude_unset": True}

    @app.put(
        "/v1/secrets/{name}",
        response_model=Secret,
        openapi_extra=SECRET_BODY,
        responses=refusals(),
        **common,
    )
    async def put_secret(name: str, request: Request, who: CallerDep, p: PlaneDep) -> Any:
        """Write a secret of your tenant (a new version holding exactly these keys)."""
        return await p.put_secret(who, name, await _json(request))

    @app.get("/v1/secrets", response_model=SecretPage, responses=refusals(), **common)
    async def list_secrets(who: CallerDep, p: PlaneDep) -> Any:
        """Your tenant's secrets: names, keys and versions, never values."""
        return await p.list_secrets(who)

    @app.get("/v1/secrets/{name}", response_model=Secret, responses=refusals(404), **common)
    async def get_secret(name: str, who: CallerDep, p: PlaneDep) -> Any:
        """One secret's metadata (its values are never shown)."""
        return await p.get_secret(who, name)

    @app.delete(
        "/v1/secrets/{name}", response_model=SecretDeleted, responses=refusals(404), **common
    )
    async def delete_secret(name: str, who: CallerDep, p: PlaneDep) -> Any:
        """Delete a secret with every version; executions that reference it fail to launch."""
        return await p.delete_secret(who, name)
