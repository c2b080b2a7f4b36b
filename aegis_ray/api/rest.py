"""The REST API (FastAPI), served by the control-plane Serve deployment on orchestrators.

Routes are thin: authenticate, call the transport-independent `ControlPlane`
(aegis_ray/api/control_plane.py), return its body, declared and checked as the contract's model
(aegis_ray/contract). Refusals are `ApiProblem`s, answered with the status their error name maps
to and an `ErrorBody`; FastAPI's own request validation answers the same way (bad_request).
/docs and /redoc serve their assets from the package (fastapi-offline): no CDN.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi_offline import FastAPIOffline

from aegis_ray import __version__
from aegis_ray.adapters import metrics
from aegis_ray.api.control_plane import (
    MAX_MANIFEST_BYTES,
    cursor_ids,
    plain_text,
    read_manifest,
    shown,
)
from aegis_ray.api.deps import AdminDep, CallerDep, PlaneDep
from aegis_ray.api.errors import ApiProblem, as_problem, refusal_types
from aegis_ray.api.nodes import install_node_routes
from aegis_ray.api.openapi import MANIFEST_BODY, ndjson_of, refusals, with_extra_schemas
from aegis_ray.api.secrets import install_secret_routes
from aegis_ray.contract import cluster, executions


class NDJSONResponse(StreamingResponse):
    media_type = "application/x-ndjson"


def create_app() -> FastAPI:
    app = FastAPIOffline(
        title="aegis-ray",
        version=__version__,
        description="Execution cluster for containerized AI agents, built on Ray.",
        static_url="/docs/static",
    )
    _install_error_handlers(app)
    _install_metrics(app)
    _install_routes(app)
    install_node_routes(app)
    install_secret_routes(app)
    app.openapi = with_extra_schemas(app)  # type: ignore[method-assign]
    return app


def problem_response(problem: ApiProblem) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if problem.error == "unauthenticated" else {}
    if "retry_after_s" in problem.extra:
        headers["Retry-After"] = str(problem.extra["retry_after_s"])
    return JSONResponse(problem.body(), status_code=problem.http_status, headers=headers)


def invalid_request(exc: RequestValidationError) -> ApiProblem:
    """FastAPI's validation errors as the project's refusal, each naming where (query.limit):
    bad_request (400) for the query or path, invalid_request (422) for a body's field."""
    problems = [
        {
            "path": ".".join(str(part) for part in err["loc"]),
            "message": err["msg"],
            "value": shown(jsonable_encoder(err.get("input"))),
        }
        for err in exc.errors()
    ]
    message = "; ".join(f"{p['path']}: {p['message']} (got {p['value']!r})" for p in problems)
    in_body = bool(problems) and all(p["path"].startswith("body") for p in problems)
    error = "invalid_request" if in_body else "bad_request"
    return ApiProblem(error, message or "invalid request", problems=problems)


def _install_error_handlers(app: FastAPI) -> None:
    async def refused(_: Request, exc: Exception) -> JSONResponse:
        problem = as_problem(exc)
        assert problem is not None  # registered for refusal_types() only
        return problem_response(problem)

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(invalid_request(exc))

    async def too_deep(_: Request, exc: Exception) -> JSONResponse:
        # A JSON body nested thousands of levels deep exhausts the parser's recursion.
        return problem_response(ApiProblem("bad_request", "request body nested too deeply"))

    for kind in refusal_types():
        app.add_exception_handler(kind, refused)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(RecursionError, too_deep)


class PlainUrls:
    """ASGI middleware: a path or query parameter PostgreSQL cannot hold (a NUL: `%00`) is
    refused with 400 naming it, before any route sees it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            query: dict[str, list[str]] = {}
            for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
                query.setdefault(f"query.{key}", []).append(value)
            try:
                plain_text(path=scope.get("path", ""), **query)
            except ApiProblem as problem:
                await problem_response(problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class TimedRequests:
    """ASGI middleware: each request's latency, until its answer starts (a stream's time is its
    first byte: following one for hours is not latency), by route template and status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                # The route's template, not the path: one series per route, not per execution.
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                elapsed = time.perf_counter() - started
                code = str(message["status"])
                metrics.API_REQUESTS.observe(elapsed, transport="rest", route=route, code=code)
            await send(message)

        await self.app(scope, receive, timed_send)


def _install_metrics(app: FastAPI) -> None:
    app.add_middleware(PlainUrls)
    app.add_middleware(TimedRequests)

    @app.get("/metrics", tags=["cluster"], response_class=PlainTextResponse, responses=refusals())
    async def prometheus_metrics(who: AdminDep) -> Response:
        """This control-plane replica's metrics in Prometheus text format (admin token):
        for scrapers that cannot reach Ray's own metrics ports."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)


async def _manifest(request: Request, source: str) -> Any:
    """The manifest in the body, read no further than its limit (Serve's proxy refuses a
    larger Content-Length before this; this holds for a body that comes in chunks)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_MANIFEST_BYTES:
            raise ApiProblem("too_large", f"{source}: manifest over 1 MiB")
        chunks.append(chunk)
    return read_manifest(b"".join(chunks), source)


def _install_routes(app: FastAPI) -> None:
    common: dict[str, Any] = {"response_model_exclude_unset": True}

    @app.get(
        "/health",
        tags=["cluster"],
        response_model=cluster.Health,
        responses={503: {"model": cluster.Health, "description": "a dependency does not answer"}},
        **common,
    )
    async def health(p: PlaneDep) -> JSONResponse:
        body = await p.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.post(
        "/v1/plan",
        tags=["executions"],
        response_model=executions.PlanResult,
        openapi_extra=MANIFEST_BODY,
        responses=refusals(413, 422),
        **common,
    )
    async def plan_manifest(
        request: Request, who: CallerDep, p: PlaneDep, source: str = "<request>"
    ) -> Any:
        """Dry run: which nodes could take this manifest, and why the others cannot."""
        return await p.plan(await _manifest(request, source))

    @app.post(
        "/v1/executions",
        status_code=201,
        tags=["executions"],
        response_model=executions.Execution,
        openapi_extra=MANIFEST_BODY,
        responses=refusals(409, 413, 422)
        | {200: {"model": executions.Execution, "description": "the Idempotency-Key's execution"}},
        **common,
    )
    async def submit(
        request: Request,
        response: Response,
        who: CallerDep,
        p: PlaneDep,
        source: str = "<request>",
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                description="the same key (and tenant) within 24 h answers 200 with the"
                " execution it first made, instead of making another; 409 for another manifest",
            ),
        ] = None,
    ) -> Any:
        """Submit an Agent manifest (YAML or JSON); answers once the execution is stored."""
        manifest = await _manifest(request, source)
        body, created = await p.submit_once(who, manifest, idempotency_key)
        if not created:
            response.status_code = 200
        return body

    @app.get(
        "/v1/executions",
        tags=["executions"],
        response_model=executions.ExecutionPage,
        responses=refusals(),
        **common,
    )
    async def list_executions(
        who: CallerDep,
        p: PlaneDep,
        state: Annotated[list[str] | None, Query()] = None,
        name: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: str | None = None,
        label: Annotated[list[str] | None, Query(description="key=value (repeatable)")] = None,
    ) -> Any:
        """Executions, newest first; `before` is the `next_before` of the previous page;
        `label` keeps those whose manifest has every label given."""
        return await p.list_executions(
            who, states=state, name=name, limit=limit, before=before, labels=label
        )

    @app.get(
        "/v1/executions/{execution_id}",
        tags=["executions"],
        response_model=executions.Execution,
        responses=refusals(404),
        **common,
    )
    async def get_execution(execution_id: str, who: CallerDep, p: PlaneDep) -> Any:
        return await p.get_execution(who, execution_id)

    @app.get(
        "/v1/executions/{execution_id}/events",
        tags=["executions"],
        response_model=executions.EventPage,
        responses=refusals(404) | ndjson_of("Event", "FollowEnd"),
        **common,
    )
    async def events(
        execution_id: str, who: CallerDep, p: PlaneDep, after: int = 0, follow: bool = False
    ) -> Any:
        """State changes and notes; with follow=true, an NDJSON stream until the end."""
        if follow:
            cursor_ids(after=after)  # named as given, before the stream's 200
            items = await p.watch(who, execution_id, after_event=after, logs=False)
            return _ndjson(items, "event")
        return await p.events(who, execution_id, after)

    @app.get(
        "/v1/executions/{execution_id}/logs",
        tags=["executions"],
        response_model=executions.LogPage,
        responses=refusals(404) | ndjson_of("LogLine", "FollowEnd"),
        **common,
    )
    async def logs(
        execution_id: str,
        who: CallerDep,
        p: PlaneDep,
        after: int = 0,
        follow: bool = False,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> Any:
        """Output lines in order; with follow=true, an NDJSON stream until the end."""
        if follow:
            cursor_ids(after=after)  # named as given, before the stream's 200
            return _ndjson(await p.watch(who, execution_id, after_log=after, events=False), "log")
        return await p.logs(who, execution_id, after, limit)

    @app.get(
        "/v1/executions/{execution_id}/watch",
        tags=["executions"],
        response_class=NDJSONResponse,
        responses=refusals(404) | ndjson_of("WatchItem"),
    )
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

    @app.get(
        "/v1/events",
        tags=["cluster"],
        response_model=cluster.ClusterEventPage,
        responses=refusals() | ndjson_of("ClusterWatchItem"),
        **common,
    )
    async def cluster_events(
        who: CallerDep,
        p: PlaneDep,
        after: int | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        follow: bool = False,
    ) -> Any:
        """The cluster feed: node joins, losses and drains, and every execution state change
        (non-admins: their own executions only). `after` an event id, else the latest `limit`;
        with follow=true an NDJSON stream of {"event": ...} from `after` (else from now on)."""
        if follow:
            return _ndjson(await p.watch_cluster(who, after=after))
        return await p.cluster_events(who, after=after, limit=limit)

    @app.post(
        "/v1/executions/{execution_id}/cancel",
        status_code=202,
        tags=["executions"],
        response_model=executions.Cancelled,
        responses=refusals(404, 409),
        **common,
    )
    async def cancel(execution_id: str, who: CallerDep, p: PlaneDep) -> Any:
        """Stop the execution: its container is stopped and it ends CANCELLED."""
        return await p.cancel(who, execution_id)


def _ndjson(items: AsyncIterator[dict[str, Any]], only: str | None = None) -> StreamingResponse:
    """Stream rows as JSON lines. With `only`, rows are unwrapped ({"log": row} -> row) and
    the end is {"end": true, "state": ...}, as the follow=true streams always answered."""

    async def body() -> AsyncIterator[bytes]:
        async for item in items:
            if only is not None:
                item = {"end": True, "state": item["end"]["state"]} if "end" in item else item[only]
            yield (json.dumps(item, default=str) + "\n").encode()

    return NDJSONResponse(body())
