"""`Client` and `AsyncClient`: the aegis API in Python, over REST or gRPC.

    from aegis_ray import Client
    client = Client.from_env()
    print(client.run("examples/hello-agent.yaml").state)

The methods are the operations of sdk/operations.py, written once for both clients; results are
the contract's models (aegis_ray/contract), refusals the errors of sdk/errors.py.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel

from aegis_ray.contract.cluster import ClusterEvent, ClusterWatchItem
from aegis_ray.contract.executions import Execution, LogLine, WatchItem
from aegis_ray.sdk import contexts, discovery
from aegis_ray.sdk.contexts import Context
from aegis_ray.sdk.operations import Item, Manifest, Operations
from aegis_ray.sdk.transport import AsyncTransport, Request, Transport
from aegis_ray.settings import Settings

T = TypeVar("T", bound=BaseModel)
Api = Literal["rest", "grpc"]
WAIT_POLL_S = 0.5
DEFAULT_TIMEOUT_S = 30.0
Stream = Request[WatchItem] | Request[ClusterWatchItem]


class _Client(Operations):
    """What both clients share besides the operations: a transport, and how to make one."""

    #: The class in sdk/rest.py that carries this client's requests over HTTP.
    _rest_transport: ClassVar[str]

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    @classmethod
    def rest(cls, url: str, token: str | None, *, timeout: float = 30.0) -> Self:
        """A client of the REST API at `url` (http://host:8080) with this bearer token."""
        from aegis_ray.sdk import rest

        return cls(getattr(rest, cls._rest_transport)(url, token, timeout=timeout))


class Client(_Client):
    """The aegis API over a transport (`Client.rest(...)`, `Client.grpc(...)`, `from_env()`)."""

    _rest_transport = "RestTransport"
    transport: Transport

    @classmethod
    def grpc(cls, address: str, token: str | None, *, timeout: float = 30.0) -> Self:
        from aegis_ray.sdk.grpc import GrpcTransport

        return cls(GrpcTransport(address, token, timeout=timeout))

    @classmethod
    def from_env(
        cls, api: Api | None = None, *, timeout: float | None = None, context: str | None = None
    ) -> Self:
        """The client the `aegis` CLI would use here (see sdk/discovery.py); `context` names
        one of the client config file's contexts (default: AEGIS_CONTEXT, then its current)."""
        settings = Settings()
        ctx = _chosen(context)
        token = discovery.token(settings, ctx)
        timeout = timeout or (ctx and ctx.timeout) or DEFAULT_TIMEOUT_S
        if (api or _api_from_env(ctx)) == "grpc":
            return cls.grpc(discovery.grpc_address(settings, ctx), token, timeout=timeout)
        return cls.rest(discovery.api_url(settings, ctx), token, timeout=timeout)

    def send(self, request: Request[T]) -> T:
        """Send one request; its reply body as the request's model."""
        return request.result.model_validate(self.transport.call(request.op, request.args))

    def items(self, request: Stream) -> Iterator[Item | ClusterEvent]:
        """The items of a stream (watch, the cluster feed), as they come."""
        for raw in self.transport.stream(request.op, request.args):
            yield request.result.model_validate(raw).item

    def logs(self, execution_id: str, *, after: int = 0) -> Iterator[LogLine]:
        """Every output line stored so far, page by page (`watch` follows new ones)."""
        while lines := self.log_page(execution_id, after=after).items:
            yield from lines
            after = lines[-1].id

    def wait(self, execution_id: str, *, timeout: float | None = None) -> Execution:
        """The execution once it has ended; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (execution := self.get(execution_id)).finished:
            _check(deadline, execution)
            time.sleep(WAIT_POLL_S)
        return execution

    def run(
        self, manifest: Manifest, *, source: str | None = None, timeout: float | None = None
    ) -> Execution:
        """Submit a manifest and wait for the execution to end."""
        return self.wait(self.submit(manifest, source=source).id, timeout=timeout)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Client):
    """`Client` for asyncio: the same methods, awaited. REST only (httpx.AsyncClient)."""

    _rest_transport = "AsyncRestTransport"
    transport: AsyncTransport

    @classmethod
    def from_env(cls, *, timeout: float | None = None, context: str | None = None) -> Self:
        """The REST API the `aegis` CLI would use here (see sdk/discovery.py)."""
        settings = Settings()
        ctx = _chosen(context)
        timeout = timeout or (ctx and ctx.timeout) or DEFAULT_TIMEOUT_S
        token = discovery.token(settings, ctx)
        return cls.rest(discovery.api_url(settings, ctx), token, timeout=timeout)

    async def send(self, request: Request[T]) -> T:
        body = await self.transport.call(request.op, request.args)
        return request.result.model_validate(body)

    async def items(self, request: Stream) -> AsyncIterator[Item | ClusterEvent]:
        async for raw in self.transport.stream(request.op, request.args):
            yield request.result.model_validate(raw).item

    async def logs(self, execution_id: str, *, after: int = 0) -> AsyncIterator[LogLine]:
        while lines := (await self.log_page(execution_id, after=after)).items:
            for line in lines:
                yield line
            after = lines[-1].id

    async def wait(self, execution_id: str, *, timeout: float | None = None) -> Execution:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (execution := await self.get(execution_id)).finished:
            _check(deadline, execution)
            await asyncio.sleep(WAIT_POLL_S)
        return execution

    async def run(
        self, manifest: Manifest, *, source: str | None = None, timeout: float | None = None
    ) -> Execution:
        submitted = await self.submit(manifest, source=source)
        return await self.wait(submitted.id, timeout=timeout)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _chosen(context: str | None) -> Context | None:
    named = contexts.active(context)
    return named[1] if named else None


def _api_from_env(context: Context | None = None) -> Api:
    api = os.environ.get("AEGIS_API") or (context and context.api) or "rest"
    if api not in ("rest", "grpc"):
        raise ValueError(f"AEGIS_API={api!r}: accepted are rest, grpc")
    return "grpc" if api == "grpc" else "rest"


def _check(deadline: float | None, execution: Execution) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f"execution {execution.id} still {execution.state} after the timeout")
