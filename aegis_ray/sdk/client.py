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
from dataclasses import replace
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel

from aegis_ray.contract.cluster import ClusterEvent, ClusterWatchItem
from aegis_ray.contract.executions import End, Event, Execution, LogLine, WatchItem
from aegis_ray.sdk import contexts, discovery
from aegis_ray.sdk.contexts import Context
from aegis_ray.sdk.errors import ApiError, ApiUnreachable
from aegis_ray.sdk.operations import Item, Manifest, Operations
from aegis_ray.sdk.transport import AsyncTransport, Op, Request, Transport
from aegis_ray.settings import Settings

T = TypeVar("T", bound=BaseModel)
Api = Literal["rest", "grpc"]
WAIT_POLL_S = 0.5
DEFAULT_TIMEOUT_S = 30.0
#: How long a follower (watch, the cluster feed, wait) keeps getting back to the API after a
#: blip (a restarted API replica, PostgreSQL or head) before it gives up with ApiUnreachable.
OUTAGE_S = 300.0
#: Backoff between tries: doubling from the first to the last, then the last.
BACKOFF_S = (0.25, 5.0)
#: How many times a request that must not be repeated blindly (submit, with its idempotency
#: key) is sent when the API cannot be reached.
SEND_TRIES = 3
#: Refusals that mean "not now" (the API or what it needs is restarting, or too many streams
#: are open just now), not "no".
TRANSIENT_STATUS = (429, 502, 503, 504)
Stream = Request[WatchItem] | Request[ClusterWatchItem]


def transient(err: Exception) -> bool:
    """A failure worth trying again: nothing answered, or the API said it is unavailable."""
    return isinstance(err, ApiUnreachable) or (
        isinstance(err, ApiError) and err.status in TRANSIENT_STATUS
    )


class Outage:
    """Backoff across one outage: the delay before the next try, until `budget_s` seconds
    have passed since the first failure; then ApiUnreachable. Progress (`reset`) ends it."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.reset()

    def reset(self) -> None:
        self.since: float | None = None
        self.tries = 0

    def delay(self, why: Exception | str) -> float:
        now = time.monotonic()
        self.since = now if self.since is None else self.since
        left = self.since + self.budget_s - now
        if left <= 0:
            raise ApiUnreachable(
                f"lost the aegis API for over {self.budget_s:g}s, trying again all along"
                f" (last: {why})"
            )
        first, last = BACKOFF_S
        self.tries += 1
        return float(min(first * 2 ** (self.tries - 1), last, left))


class Cursor:
    """Where a stream has got to, so that it can be opened again from there: the last event
    and log line of a watch, the last event of the cluster feed."""

    def __init__(self, request: Stream) -> None:
        self.request: Stream = request
        self.ended = False

    def saw(self, item: Item | ClusterEvent) -> None:
        args = dict(self.request.args)
        if isinstance(item, End):
            self.ended = True
        elif isinstance(item, Event):
            args["after_event"] = item.id
        elif isinstance(item, LogLine):
            args["after_log"] = item.id
        elif isinstance(item, ClusterEvent):
            args["after"] = item.id
        self.request = replace(self.request, args=args)

    def closed_early(self) -> str:
        """Why the stream is opened again: it closed without its end (a watch) or at all."""
        what = "the watch" if self.request.op is Op.watch else "the cluster feed"
        return f"{what} closed without its end"


class _Client(Operations):
    """What both clients share besides the operations: a transport, and how to make one.

    Followers (`watch`, `watch_cluster`, `wait`) ride out an outage of the API shorter than
    `outage_s` seconds: they open the stream again from their cursor, with backoff."""

    #: The class in sdk/rest.py that carries this client's requests over HTTP.
    _rest_transport: ClassVar[str]

    def __init__(self, transport: Any, *, outage_s: float = OUTAGE_S) -> None:
        self.transport = transport
        self.outage_s = outage_s

    @classmethod
    def rest(
        cls,
        url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        outage_s: float = OUTAGE_S,
        ca_file: str | None = None,
    ) -> Self:
        """A client of the REST API at `url` (http://host:8080, https://...) with this bearer
        token; an https API's certificate is checked against `ca_file` (else system CAs)."""
        from aegis_ray.sdk import rest

        transport = getattr(rest, cls._rest_transport)
        return cls(transport(url, token, timeout=timeout, ca_file=ca_file), outage_s=outage_s)


class Client(_Client):
    """The aegis API over a transport (`Client.rest(...)`, `Client.grpc(...)`, `from_env()`)."""

    _rest_transport = "RestTransport"
    transport: Transport

    @classmethod
    def grpc(
        cls,
        address: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        outage_s: float = OUTAGE_S,
        ca_file: str | None = None,
    ) -> Self:
        """A client of the gRPC API at host:port; over TLS checked against `ca_file` if given."""
        from aegis_ray.sdk.grpc import GrpcTransport

        transport = GrpcTransport(address, token, timeout=timeout, ca_file=ca_file)
        return cls(transport, outage_s=outage_s)

    @classmethod
    def from_env(
        cls,
        api: Api | None = None,
        *,
        timeout: float | None = None,
        context: str | None = None,
        ca_file: str | None = None,
    ) -> Self:
        """The client the `aegis` CLI would use here (see sdk/discovery.py); `context` names
        one of the client config file's contexts (default: AEGIS_CONTEXT, then its current);
        `ca_file` (else AEGIS_CA_FILE, the context's, `aegis up`'s) checks the API's TLS."""
        settings = Settings()
        ctx = _chosen(context)
        token = discovery.token(settings, ctx)
        timeout = timeout or (ctx and ctx.timeout) or DEFAULT_TIMEOUT_S
        outage_s = settings.follow_outage_s
        ca = ca_file or discovery.ca_file(settings, ctx)
        if (api or _api_from_env(ctx)) == "grpc":
            address = discovery.grpc_address(settings, ctx)
            return cls.grpc(address, token, timeout=timeout, outage_s=outage_s, ca_file=ca)
        url = discovery.api_url(settings, ctx)
        return cls.rest(url, token, timeout=timeout, outage_s=outage_s, ca_file=ca)

    def send(self, request: Request[T]) -> T:
        """Send one request; its reply body as the request's model."""
        return request.result.model_validate(self.transport.call(request.op, request.args))

    def items(self, request: Stream) -> Iterator[Item | ClusterEvent]:
        """The items of a stream (watch, the cluster feed), as they come; opened again from
        its cursor when it is cut (a watch until its `End`)."""
        cursor, outage = Cursor(request), Outage(self.outage_s)
        while True:
            try:
                for raw in self.transport.stream(cursor.request.op, cursor.request.args):
                    item = cursor.request.result.model_validate(raw).item
                    cursor.saw(item)
                    outage.reset()
                    yield item
                    if cursor.ended:
                        return
                why: Exception | str = cursor.closed_early()
            except (ApiUnreachable, ApiError) as err:
                if not transient(err):
                    raise
                why = err
            time.sleep(outage.delay(why))

    def _send_again(self, request: Request[T]) -> T:
        """`send`, up to SEND_TRIES times while nothing answers (the same request each time)."""
        outage = Outage(self.outage_s)
        for _ in range(SEND_TRIES - 1):
            try:
                return self.send(request)
            except ApiUnreachable as err:
                time.sleep(outage.delay(err))
        return self.send(request)

    def _patiently(self, request: Request[T]) -> T:
        """`send`, trying again through an outage shorter than `outage_s`."""
        outage = Outage(self.outage_s)
        while True:
            try:
                return self.send(request)
            except (ApiUnreachable, ApiError) as err:
                if not transient(err):
                    raise
                time.sleep(outage.delay(err))

    def logs(self, execution_id: str, *, after: int = 0) -> Iterator[LogLine]:
        """Every output line stored so far, page by page (`watch` follows new ones)."""
        while lines := self.log_page(execution_id, after=after).items:
            yield from lines
            after = lines[-1].id

    def wait(self, execution_id: str, *, timeout: float | None = None) -> Execution:
        """The execution once it has ended; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (execution := self._patiently(Operations.get.build(execution_id))).finished:
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
        url = discovery.api_url(settings, ctx)
        return cls.rest(
            url,
            token,
            timeout=timeout,
            outage_s=settings.follow_outage_s,
            ca_file=discovery.ca_file(settings, ctx),
        )

    async def send(self, request: Request[T]) -> T:
        body = await self.transport.call(request.op, request.args)
        return request.result.model_validate(body)

    async def items(self, request: Stream) -> AsyncIterator[Item | ClusterEvent]:
        cursor, outage = Cursor(request), Outage(self.outage_s)
        while True:
            try:
                async for raw in self.transport.stream(cursor.request.op, cursor.request.args):
                    item = cursor.request.result.model_validate(raw).item
                    cursor.saw(item)
                    outage.reset()
                    yield item
                    if cursor.ended:
                        return
                why: Exception | str = cursor.closed_early()
            except (ApiUnreachable, ApiError) as err:
                if not transient(err):
                    raise
                why = err
            await asyncio.sleep(outage.delay(why))

    async def _send_again(self, request: Request[T]) -> T:
        outage = Outage(self.outage_s)
        for _ in range(SEND_TRIES - 1):
            try:
                return await self.send(request)
            except ApiUnreachable as err:
                await asyncio.sleep(outage.delay(err))
        return await self.send(request)

    async def _patiently(self, request: Request[T]) -> T:
        outage = Outage(self.outage_s)
        while True:
            try:
                return await self.send(request)
            except (ApiUnreachable, ApiError) as err:
                if not transient(err):
                    raise
                await asyncio.sleep(outage.delay(err))

    async def logs(self, execution_id: str, *, after: int = 0) -> AsyncIterator[LogLine]:
        while lines := (await self.log_page(execution_id, after=after)).items:
            for line in lines:
                yield line
            after = lines[-1].id

    async def wait(self, execution_id: str, *, timeout: float | None = None) -> Execution:
        deadline = None if timeout is None else time.monotonic() + timeout
        get = Operations.get.build(execution_id)
        while not (execution := await self._patiently(get)).finished:
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
