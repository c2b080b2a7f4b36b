"""The REST API (FastAPI), served by the control-plane Serve deployment on orchestrators."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from temporalio.service import RPCError, RPCStatusCode

from aegis_ray import __version__
from aegis_ray.api.auth import Caller
from aegis_ray.api.context import Connections, TemporalUnavailable
from aegis_ray.api.deps import CallerDep, ConnsDep
from aegis_ray.api.nodes import install_node_routes, live_view
from aegis_ray.models.execution import TERMINAL_STATES, ExecutionState
from aegis_ray.models.loading import ManifestError, parse_agent
from aegis_ray.placement.bundle import demand_of
from aegis_ray.placement.fit import PlanResult, plan
from aegis_ray.store.db import StoreUnavailable
from aegis_ray.workflows.execution import WORKFLOW_NAME
from aegis_ray.workflows.types import workflow_id

FOLLOW_POLL_S = 0.25
MAX_MANIFEST_BYTES = 1 << 20


def create_app() -> FastAPI:
    app = FastAPI(
        title="aegis-ray",
        version=__version__,
        description="Execution cluster for containerized AI agents, built on Ray.",
    )
    _install_error_handlers(app)
    _install_routes(app)
    return app


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        body = (
            exc.detail if isinstance(exc.detail, dict) else {"error": "http", "message": exc.detail}
        )
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ManifestError)
    async def bad_manifest(_: Request, exc: ManifestError) -> JSONResponse:
        return JSONResponse(exc.to_dict() | {"message": str(exc)}, status_code=422)

    @app.exception_handler(StoreUnavailable)
    async def store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return _error(503, "database_unavailable", str(exc))

    @app.exception_handler(asyncpg.PostgresConnectionError)
    @app.exception_handler(asyncpg.InterfaceError)
    @app.exception_handler(ConnectionError)
    async def store_lost(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, "database_unavailable", f"PostgreSQL connection failed: {exc}")

    @app.exception_handler(TemporalUnavailable)
    async def temporal_down(_: Request, exc: TemporalUnavailable) -> JSONResponse:
        return _error(503, "temporal_unavailable", str(exc))


async def _worker_status(request: Request) -> str:
    """Is the Temporal worker replica alive? Without it submissions would never move."""
    worker = getattr(request.app.state, "worker", None)
    if worker is None:
        return "unknown"
    try:
        return str(await asyncio.wait_for(worker.ping.remote(), 5))
    except Exception as err:
        return f"unavailable: {type(err).__name__}: {err}"[:300]


def plan_body(result: PlanResult) -> dict[str, Any]:
    return {
        "feasible": result.feasible,
        "summary": result.summary(),
        "fits_now": result.fits_now,
        "fits_later": result.fits_later,
        "nodes": [
            {
                "node_id": node_id,
                "reasons": [
                    {
                        "check": r.check,
                        "message": r.message,
                        "needed": r.needed,
                        "available": r.available,
                    }
                    for r in reasons
                ],
            }
            for node_id, reasons in result.reasons.items()
        ],
    }


async def _read_manifest(request: Request, source: str) -> Any:
    raw = await request.body()
    if len(raw) > MAX_MANIFEST_BYTES:
        raise HTTPException(413, {"error": "too_large", "message": "manifest over 1 MiB"})
    return parse_agent(raw.decode("utf-8", errors="replace"), source=source)


def _parse_id(execution_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(execution_id)
    except ValueError:
        raise HTTPException(
            404, {"error": "not_found", "message": f"no execution {execution_id!r}"}
        ) from None


async def _get_or_404(c: Connections, who: Caller, execution_id: str) -> Any:
    eid = _parse_id(execution_id)
    rec = await (await c.executions()).get(eid, tenant_id=who.tenant_id)
    if rec is None:
        raise HTTPException(404, {"error": "not_found", "message": f"no execution {execution_id}"})
    return rec


def _install_routes(app: FastAPI) -> None:  # noqa: C901 - one place lists every route
    @app.get("/health", tags=["cluster"])
    async def health(request: Request, c: ConnsDep) -> JSONResponse:
        checks = await c.check()
        checks["worker"] = await _worker_status(request)
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if ok else "degraded", "version": __version__, **checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.post("/v1/plan", tags=["executions"])
    async def plan_manifest(
        request: Request, who: CallerDep, c: ConnsDep, source: str = "<request>"
    ) -> dict[str, Any]:
        manifest = await _read_manifest(request, source)
        view = await live_view(c)
        return plan_body(plan(demand_of(manifest), view.nodes))

    @app.post("/v1/executions", status_code=201, tags=["executions"])
    async def submit(
        request: Request, who: CallerDep, c: ConnsDep, source: str = "<request>"
    ) -> dict[str, Any]:
        manifest = await _read_manifest(request, source)
        view = await live_view(c)
        result = plan(demand_of(manifest), view.nodes)
        if not result.feasible:
            raise HTTPException(
                422,
                {"error": "unschedulable", "message": result.summary(), "plan": plan_body(result)},
            )
        client = await c.temporal()  # fail before writing anything if Temporal is down
        store = await c.executions()
        rec = await store.create(
            tenant_id=who.tenant_id,
            name=manifest.metadata.name,
            manifest=manifest.to_document(),
            max_retries=manifest.spec.execution.max_retries,
            timeout_s=manifest.spec.execution.timeout,
        )
        wid = workflow_id(rec.id)
        try:
            await client.start_workflow(
                WORKFLOW_NAME, str(rec.id), id=wid, task_queue=c.config.task_queue
            )
        except Exception as err:
            # Nothing half-written: without its workflow the row would never move.
            await store.delete(rec.id)
            raise TemporalUnavailable(f"could not start the execution workflow: {err}") from err
        await store.set_workflow_id(rec.id, wid)
        return _with_plan(rec.to_dict() | {"workflow_id": wid}, result)

    @app.get("/v1/executions", tags=["executions"])
    async def list_executions(
        who: CallerDep,
        c: ConnsDep,
        state: Annotated[list[str] | None, Query()] = None,
        name: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: str | None = None,
    ) -> dict[str, Any]:
        states = [s.upper() for s in state] if state else None
        for s in states or []:
            if s not in ExecutionState.__members__:
                raise HTTPException(
                    400,
                    {
                        "error": "bad_request",
                        "message": f"unknown state {s!r}; accepted: "
                        + ", ".join(ExecutionState.__members__),
                    },
                )
        cursor, cursor_id = _parse_cursor(before)
        rows = await (await c.executions()).list(
            tenant_id=who.tenant_id,
            states=states,
            name=name,
            limit=limit,
            before=cursor,
            before_id=cursor_id,
        )
        items = [r.to_dict() for r in rows]
        next_before = (
            f"{items[-1]['created_at']}|{items[-1]['id']}" if len(items) == limit else None
        )
        return {"items": items, "next_before": next_before}

    @app.get("/v1/executions/{execution_id}", tags=["executions"])
    async def get_execution(execution_id: str, who: CallerDep, c: ConnsDep) -> dict[str, Any]:
        rec = await _get_or_404(c, who, execution_id)
        attempts = await (await c.executions()).attempts(rec.id)
        return rec.to_dict() | {"attempts": [a.to_dict() for a in attempts]}

    @app.get("/v1/executions/{execution_id}/events", tags=["executions"])
    async def events(
        execution_id: str, who: CallerDep, c: ConnsDep, after: int = 0, follow: bool = False
    ) -> Any:
        rec = await _get_or_404(c, who, execution_id)
        store = await c.executions()
        if not follow:
            rows = await store.events(rec.id, tenant_id=who.tenant_id, after_id=after)
            return {"items": [e.to_dict() for e in rows]}

        async def fetch(after_id: int) -> list[Any]:
            return await store.events(rec.id, tenant_id=who.tenant_id, after_id=after_id)

        return _ndjson(_follow(store, rec.id, who.tenant_id, after, fetch))

    @app.get("/v1/executions/{execution_id}/logs", tags=["executions"])
    async def logs(
        execution_id: str,
        who: CallerDep,
        c: ConnsDep,
        after: int = 0,
        follow: bool = False,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> Any:
        rec = await _get_or_404(c, who, execution_id)
        store = await c.executions()

        async def fetch(after_id: int) -> list[Any]:
            return await store.logs(rec.id, tenant_id=who.tenant_id, after_id=after_id, limit=limit)

        if not follow:
            rows = await fetch(after)
            return {"items": [r.to_dict() for r in rows]}
        return _ndjson(_follow(store, rec.id, who.tenant_id, after, fetch))

    @app.post("/v1/executions/{execution_id}/cancel", status_code=202, tags=["executions"])
    async def cancel(execution_id: str, who: CallerDep, c: ConnsDep) -> dict[str, Any]:
        rec = await _get_or_404(c, who, execution_id)
        if rec.state in TERMINAL_STATES:
            raise HTTPException(
                409,
                {
                    "error": "already_finished",
                    "message": f"execution is {rec.state.value}",
                    "state": rec.state.value,
                },
            )
        client = await c.temporal()
        try:
            await client.get_workflow_handle(rec.workflow_id or workflow_id(rec.id)).cancel()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise TemporalUnavailable(f"could not cancel: {err}") from err
            # The workflow has just ended: report the row as it is now.
            rec = await _get_or_404(c, who, execution_id)
            raise HTTPException(
                409,
                {
                    "error": "already_finished",
                    "message": f"execution is {rec.state.value}",
                    "state": rec.state.value,
                },
            ) from None
        await (await c.executions()).add_event(rec.id, kind="info", message="cancel requested")
        return {"id": str(rec.id), "state": rec.state.value, "cancel_requested": True}

    install_node_routes(app)


def _parse_cursor(before: str | None) -> tuple[Any, uuid.UUID | None]:
    """Paging cursor "created_at|id" (as returned in next_before); ties on time stay exact."""
    if not before:
        return None, None
    from datetime import datetime

    when, _, ident = before.partition("|")
    try:
        return datetime.fromisoformat(when), uuid.UUID(ident) if ident else None
    except ValueError:
        raise HTTPException(
            400, {"error": "bad_request", "message": f"before={before!r} is not a paging cursor"}
        ) from None


def _with_plan(body: dict[str, Any], result: PlanResult) -> dict[str, Any]:
    if not result.fits_now:
        body["waiting"] = result.summary()
    return body


async def _follow(
    store: Any, eid: Any, tenant_id: str, after: int, fetch: Any
) -> AsyncIterator[dict[str, Any]]:
    """Yield rows as they arrive until the execution is finished and nothing is left."""
    while True:
        rows = await fetch(after)
        for r in rows:
            after = r.id
            yield r.to_dict()
        if rows:
            continue
        rec = await store.get(eid, tenant_id=tenant_id)
        if rec is None or rec.state in TERMINAL_STATES:
            # One last read: rows written just before the final state change.
            for r in await fetch(after):
                after = r.id
                yield r.to_dict()
            yield {"end": True, "state": rec.state.value if rec else None}
            return
        await asyncio.sleep(FOLLOW_POLL_S)


def _ndjson(rows: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for row in rows:
            yield (json.dumps(row, default=str) + "\n").encode()

    return StreamingResponse(body(), media_type="application/x-ndjson")
