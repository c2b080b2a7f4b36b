"""The REST API (FastAPI), served by the control-plane Serve deployment on orchestrators.

Routes are thin: authenticate, call the transport-independent `ControlPlane`
(aegis_ray/api/service.py), return its body. Refusals are `ApiProblem`s, answered with the
status their error name maps to (aegis_ray/api/errors.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from aegis_ray import __version__
from aegis_ray.api.control_plane import read_manifest
from aegis_ray.api.deps import CallerDep, PlaneDep
from aegis_ray.api.errors import ApiProblem, as_problem, refusal_types
from aegis_ray.api.nodes import install_node_routes


def create_app() -> FastAPI:
    app = FastAPI(
        title="aegis-ray",
        version=__version__,
        description="Execution cluster for containerized AI agents, built on Ray.",
    )
    _install_error_handlers(app)
    _install_routes(app)
    install_node_routes(app)
    return app


def problem_response(problem: ApiProblem) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if problem.error == "unauthenticated" else None
    return JSONResponse(problem.body(), status_code=problem.http_status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def refused(_: Request, exc: Exception) -> JSONResponse:
        problem = as_problem(exc)
        assert problem is not None  # registered for refusal_types() only
        return problem_response(problem)

    for kind in refusal_types():
        app.add_exception_handler(kind, refused)


async def _manifest(request: Request, source: str) -> Any:
    return read_manifest(await request.body(), source)


def _install_routes(app: FastAPI) -> None:
    @app.get("/health", tags=["cluster"])
    async def health(p: PlaneDep) -> JSONResponse:
        body = await p.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.post("/v1/plan", tags=["executions"])
    async def plan_manifest(
        request: Request, who: CallerDep, p: PlaneDep, source: str = "<request>"
    ) -> dict[str, Any]:
        return await p.plan(await _manifest(request, source))

    @app.post("/v1/executions", status_code=201, tags=["executions"])
    async def submit(
        request: Request, who: CallerDep, p: PlaneDep, source: str = "<request>"
    ) -> dict[str, Any]:
        return await p.submit(who, await _manifest(request, source))

    @app.get("/v1/executions", tags=["executions"])
    async def list_executions(
        who: CallerDep,
        p: PlaneDep,
        state: Annotated[list[str] | None, Query()] = None,
        name: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: str | None = None,
    ) -> dict[str, Any]:
        return await p.list_executions(who, states=state, name=name, limit=limit, before=before)

    @app.get("/v1/executions/{execution_id}", tags=["executions"])
    async def get_execution(execution_id: str, who: CallerDep, p: PlaneDep) -> dict[str, Any]:
        return await p.get_execution(who, execution_id)

    @app.get("/v1/executions/{execution_id}/events", tags=["executions"])
    async def events(
        execution_id: str, who: CallerDep, p: PlaneDep, after: int = 0, follow: bool = False
    ) -> Any:
        if follow:
            items = await p.watch(who, execution_id, after_event=after, logs=False)
            return _ndjson(items, "event")
        return await p.events(who, execution_id, after)

    @app.get("/v1/executions/{execution_id}/logs", tags=["executions"])
    async def logs(
        execution_id: str,
        who: CallerDep,
        p: PlaneDep,
        after: int = 0,
        follow: bool = False,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> Any:
        if follow:
            return _ndjson(await p.watch(who, execution_id, after_log=after, events=False), "log")
        return await p.logs(who, execution_id, after, limit)

    @app.get("/v1/executions/{execution_id}/watch", tags=["executions"])
    async def watch(
        execution_id: str,
        who: CallerDep,
        p: PlaneDep,
        after_event: int = 0,
        after_log: int = 0,
        events: bool = True,
        logs: bool = True,
    ) -> StreamingResponse:
        """NDJSON stream of {"event": ...} and {"log": ...} rows; the last row is {"end": ...}.

        The same stream as gRPC's WatchExecution.
        """
        items = await p.watch(
            who,
            execution_id,
            after_event=after_event,
            after_log=after_log,
            events=events,
            logs=logs,
        )
        return _ndjson(items)

    @app.post("/v1/executions/{execution_id}/cancel", status_code=202, tags=["executions"])
    async def cancel(execution_id: str, who: CallerDep, p: PlaneDep) -> dict[str, Any]:
        return await p.cancel(who, execution_id)


def _ndjson(items: AsyncIterator[dict[str, Any]], only: str | None = None) -> StreamingResponse:
    """Stream rows as JSON lines. With `only`, rows are unwrapped ({"log": row} -> row) and
    the end is {"end": true, "state": ...}, as the follow=true streams always answered."""

    async def body() -> AsyncIterator[bytes]:
        async for item in items:
            if only is not None:
                item = {"end": True, "state": item["end"]["state"]} if "end" in item else item[only]
            yield (json.dumps(item, default=str) + "\n").encode()

    return StreamingResponse(body(), media_type="application/x-ndjson")
