"""The API's operations, each written once for `Client` and `AsyncClient`.

An operation here is a function from the caller's arguments to a `Request` (which operation,
with which arguments, answered by which contract model). The `operation` decorator makes it a
method of both clients: `Client.get(id)` returns the `Execution`, `AsyncClient.get(id)` an
awaitable of it; each client sends the request through its transport.
"""

from __future__ import annotations

import builtins
import functools
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from pydantic import BaseModel

from aegis_ray.contract.cluster import (
    ClusterStatus,
    Health,
    Node,
    NodePage,
    NodeRecord,
    Token,
)
from aegis_ray.contract.executions import (
    MANIFEST_MEDIA_TYPES,
    Cancelled,
    EventPage,
    Execution,
    ExecutionPage,
    LogPage,
    PlanResult,
)
from aegis_ray.sdk.transport import Op, Request

if TYPE_CHECKING:
    from aegis_ray.sdk.client import AsyncClient, Client

P = ParamSpec("P")
T = TypeVar("T", bound=BaseModel)
#: A manifest: a file path, its YAML (or JSON) text, or the document as a dict.
Manifest = str | os.PathLike[str] | dict[str, Any]


class operation(Generic[P, T]):  # noqa: N801 - used as a decorator
    """A method of both clients built from one request function."""

    def __init__(self, build: Callable[P, Request[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, T]: ...

    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __get__(self, client: None, owner: type) -> operation[P, T]: ...

    def __get__(self, client: Any, owner: type) -> Any:
        if client is None:
            return self
        build = self.build

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return client.send(build(*args, **kwargs))

        return method


def manifest_text(manifest: Manifest, source: str | None) -> tuple[str, str, str]:
    """Text, source name and media type of a manifest given as a path, text or dict.

    A str with a line break (or a JSON object) is the manifest's text; any other str or
    path names a file."""
    if isinstance(manifest, dict):
        return json.dumps(manifest), source or "<dict>", MANIFEST_MEDIA_TYPES["json"]
    if isinstance(manifest, str) and ("\n" in manifest or manifest.lstrip().startswith("{")):
        return manifest, source or "<text>", MANIFEST_MEDIA_TYPES["yaml"]
    path = Path(manifest)
    return path.read_text(), source or str(path), MANIFEST_MEDIA_TYPES["yaml"]


def _manifest_args(manifest: Manifest, source: str | None) -> dict[str, Any]:
    text, source, media_type = manifest_text(manifest, source)
    return {"text": text, "source": source, "media_type": media_type}


def watch_args(
    execution_id: str, after_event: int, after_log: int, events: bool, logs: bool
) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "after_event": after_event,
        "after_log": after_log,
        "events": events,
        "logs": logs,
    }


class Operations:
    """The methods both clients share (see the module's docstring)."""

    @operation
    def health() -> Request[Health]:
        """Whether the API and its database, Temporal and worker answer (no token needed)."""
        return Request(Op.health, Health)

    @operation
    def submit(manifest: Manifest, *, source: str | None = None) -> Request[Execution]:
        """Submit an Agent manifest (path, YAML text or dict); returns the stored execution."""
        return Request(Op.submit, Execution, _manifest_args(manifest, source))

    @operation
    def plan(manifest: Manifest, *, source: str | None = None) -> Request[PlanResult]:
        """Dry run: which nodes could take this manifest, and why the others cannot."""
        return Request(Op.plan, PlanResult, _manifest_args(manifest, source))

    @operation
    def list(
        *,
        states: builtins.list[str] | None = None,
        name: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> Request[ExecutionPage]:
        """A page of executions, newest first (`before`: the previous page's next_before)."""
        args = {"states": states, "name": name, "limit": limit, "before": before}
        return Request(Op.list, ExecutionPage, args)

    @operation
    def get(execution_id: str) -> Request[Execution]:
        """One execution with its attempts."""
        return Request(Op.get, Execution, {"execution_id": execution_id})

    @operation
    def events(execution_id: str, *, after: int = 0) -> Request[EventPage]:
        """An execution's state changes and notes (after the event id `after`)."""
        return Request(Op.events, EventPage, {"execution_id": execution_id, "after": after})

    @operation
    def log_page(
        execution_id: str, *, after: int = 0, limit: int | None = None
    ) -> Request[LogPage]:
        """One page of an execution's output lines (after the line id `after`)."""
        args = {"execution_id": execution_id, "after": after, "limit": limit}
        return Request(Op.logs, LogPage, args)

    @operation
    def cancel(execution_id: str) -> Request[Cancelled]:
        """Cancel an execution: its container is stopped and it ends CANCELLED."""
        return Request(Op.cancel, Cancelled, {"execution_id": execution_id})

    @operation
    def nodes() -> Request[NodePage]:
        """The cluster's nodes with role, tags, free capacity and executions."""
        return Request(Op.nodes, NodePage)

    @operation
    def node(node_id: str) -> Request[Node]:
        return Request(Op.node, Node, {"node_id": node_id})

    @operation
    def drain(node_id: str) -> Request[NodeRecord]:
        """Give a node no new work (admin); what runs there finishes."""
        return Request(Op.drain, NodeRecord, {"node_id": node_id})

    @operation
    def undrain(node_id: str) -> Request[NodeRecord]:
        return Request(Op.undrain, NodeRecord, {"node_id": node_id})

    @operation
    def heartbeat(node_id: str) -> Request[NodeRecord]:
        return Request(Op.heartbeat, NodeRecord, {"node_id": node_id})

    @operation
    def cluster_status() -> Request[ClusterStatus]:
        return Request(Op.cluster_status, ClusterStatus)

    @operation
    def create_token(
        *, role: Literal["join", "user"] = "user", ttl_s: float = 3600.0, description: str = ""
    ) -> Request[Token]:
        """Issue a token (admin): `join` for nodes, `user` for the execution API."""
        args = {"role": role, "ttl_s": ttl_s, "description": description}
        return Request(Op.create_token, Token, args)
