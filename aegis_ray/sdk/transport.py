"""The seam between the client and the wire: an operation with its arguments goes in, the REST
API's JSON body comes out (a refusal as `ApiError`, silence as `ApiUnreachable`).

A transport knows how its wire spells each operation; the client knows what the operation means
and which contract model its body is. Tests and tools may pass any object of this shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)


class Op(StrEnum):
    """Every operation of the API (named like the client's methods)."""

    health = "health"
    submit = "submit"
    plan = "plan"
    list = "list"
    get = "get"
    events = "events"
    logs = "logs"
    watch = "watch"
    cancel = "cancel"
    nodes = "nodes"
    node = "node"
    drain = "drain"
    undrain = "undrain"
    heartbeat = "heartbeat"
    cluster_status = "cluster_status"
    create_token = "create_token"
    list_tokens = "list_tokens"
    revoke_token = "revoke_token"
    rotate_admin = "rotate_admin"
    rotate_join_secret = "rotate_join_secret"
    cluster_events = "cluster_events"
    watch_cluster = "watch_cluster"
    put_secret = "put_secret"
    secrets = "secrets"
    secret = "secret"
    delete_secret = "delete_secret"


@dataclass(frozen=True)
class Request(Generic[T]):
    """One operation to send, and the contract model its reply body is."""

    op: Op
    result: type[T]
    args: dict[str, Any] = field(default_factory=dict)


class Transport(Protocol):
    #: Where it sends, as the CLI shows it ("http://127.0.0.1:8080", "gRPC 127.0.0.1:50051").
    target: str

    def call(self, op: Op, args: dict[str, Any]) -> dict[str, Any]:
        """The reply body of one unary operation."""
        ...

    def stream(self, op: Op, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The items of a streaming operation (watch), as they come."""
        ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    target: str

    async def call(self, op: Op, args: dict[str, Any]) -> dict[str, Any]: ...

    def stream(self, op: Op, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...
