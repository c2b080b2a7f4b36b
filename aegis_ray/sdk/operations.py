"""The API's operations, each written once for `Client` and `AsyncClient`.

An operation here is a function from the caller's arguments to a `Request` (which operation,
with which arguments, answered by which contract model). The `operation` decorator makes it a
method of both clients: `Client.get(id)` returns the `Execution`, `AsyncClient.get(id)` an
awaitable of it; each client sends the request through its transport. `watch_operation` does
the same for the one stream, `watch`: an iterator of its items, or an async iterator.
"""

from __future__ import annotations

import builtins
import functools
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, ParamSpec, TypeVar, overload

from pydantic import BaseModel

from aegis_ray.contract import cluster, executions
from aegis_ray.contract import secrets as secret_bodies
from aegis_ray.sdk.transport import Op, Request

if TYPE_CHECKING:
    from aegis_ray.sdk.client import AsyncClient, Client

P = ParamSpec("P")
T = TypeVar("T", bound=BaseModel)
MEDIA = executions.MANIFEST_MEDIA_TYPES
#: What a watch yields.
Item = executions.Event | executions.LogLine | executions.End
#: A manifest: a file path, its YAML (or JSON) text, or the document as a dict.
Manifest = str | os.PathLike[str] | dict[str, Any]


class _Method(Generic[P, T]):
    """A method of both clients built from one request function; `via` names the client's
    method that sends the request (`send`: the reply, `items`: a stream's items)."""

    via: ClassVar[str]

    def __init__(self, build: Callable[P, Request[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    def bind(self, client: Any) -> Any:
        build, send = self.build, getattr(client, self.via)

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return send(build(*args, **kwargs))

        return method


class operation(_Method[P, T]):  # noqa: N801 - used as a decorator
    """A unary operation: the reply (`Client`) or an awaitable of it (`AsyncClient`)."""

    via = "send"

    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, T]: ...

    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __get__(self, client: None, owner: type) -> operation[P, T]: ...

    def __get__(self, client: Any, owner: type) -> Any:
        return self if client is None else self.bind(client)


class retried_operation(operation[P, T]):  # noqa: N801 - used as a decorator
    """A unary operation sent again while the API cannot be reached (`_send_again`)."""

    via = "_send_again"


class watch_operation(_Method[P, executions.WatchItem]):  # noqa: N801 - used as a decorator
    """The stream: an iterator (`Client`) or async iterator (`AsyncClient`) of its items."""

    via = "items"

    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, Iterator[Item]]: ...

    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, AsyncIterator[Item]]: ...

    @overload
    def __get__(self, client: None, owner: type) -> watch_operation[P]: ...

    def __get__(self, client: Any, owner: type) -> Any:
        return self if client is None else self.bind(client)


class feed_operation(_Method[P, cluster.ClusterWatchItem]):  # noqa: N801 - used as a decorator
    """The cluster feed's stream: an iterator (`Client`) or async iterator (`AsyncClient`) of
    its events; it does not end by itself."""

    via = "items"

    @overload
    def __get__(
        self, client: Client, owner: type
    ) -> Callable[P, Iterator[cluster.ClusterEvent]]: ...

    @overload
    def __get__(
        self, client: AsyncClient, owner: type
    ) -> Callable[P, AsyncIterator[cluster.ClusterEvent]]: ...

    @overload
    def __get__(self, client: None, owner: type) -> feed_operation[P]: ...

    def __get__(self, client: Any, owner: type) -> Any:
        return self if client is None else self.bind(client)


def manifest_text(manifest: Manifest, source: str | None) -> tuple[str, str, str]:
    """Text, source name and media type of a manifest given as a path, text or dict.

    A str with a line break (or a JSON object) is the manifest's text; any other str or
    path names a file."""
    if isinstance(manifest, dict):
        return json.dumps(manifest), source or "<dict>", MEDIA["json"]
    if isinstance(manifest, str) and ("\n" in manifest or manifest.lstrip().startswith("{")):
        return manifest, source or "<text>", MEDIA["yaml"]
    path = Path(manifest)
    return path.read_text(), source or str(path), MEDIA["yaml"]


def _manifest_args(manifest: Manifest, source: str | None) -> dict[str, Any]:
    text, source, media_type = manifest_text(manifest, source)
    return {"text": text, "source": source, "media_type": media_type}


class Operations:
    """The methods both clients share (see the module's docstring)."""

    @operation
    def health() -> Request[cluster.Health]:
        """Whether the API and its database, Temporal and worker answer (no token needed)."""
        return Request(Op.health, cluster.Health)

    @retried_operation
    def submit(
        manifest: Manifest, *, source: str | None = None, idempotency_key: str | None = None
    ) -> Request[executions.Execution]:
        """Submit an Agent manifest (path, YAML text or dict); returns the stored execution.

        Sent again if the API could not be reached (the reply may have been lost), with the
        same idempotency key: the API makes one execution per key. Without `idempotency_key`,
        each call makes one of its own."""
        args = _manifest_args(manifest, source)
        args["idempotency_key"] = idempotency_key or str(uuid.uuid4())
        return Request(Op.submit, executions.Execution, args)

    @operation
    def plan(manifest: Manifest, *, source: str | None = None) -> Request[executions.PlanResult]:
        """Dry run: which nodes could take this manifest, and why the others cannot."""
        return Request(Op.plan, executions.PlanResult, _manifest_args(manifest, source))

    @operation
    def list(
        *,
        states: builtins.list[str] | None = None,
        name: str | None = None,
        limit: int = 50,
        before: str | None = None,
        labels: builtins.list[str] | None = None,
    ) -> Request[executions.ExecutionPage]:
        """A page of executions, newest first (`before`: the previous page's next_before;
        `labels`: "key=value" each, all held by the manifest's metadata.labels)."""
        args = {"states": states, "name": name, "limit": limit, "before": before}
        args["labels"] = labels
        return Request(Op.list, executions.ExecutionPage, args)

    @operation
    def get(execution_id: str) -> Request[executions.Execution]:
        """One execution with its attempts."""
        return Request(Op.get, executions.Execution, {"execution_id": execution_id})

    @operation
    def events(execution_id: str, *, after: int = 0) -> Request[executions.EventPage]:
        """An execution's state changes and notes (after the event id `after`)."""
        args = {"execution_id": execution_id, "after": after}
        return Request(Op.events, executions.EventPage, args)

    @operation
    def log_page(
        execution_id: str, *, after: int = 0, limit: int | None = None
    ) -> Request[executions.LogPage]:
        """One page of an execution's output lines (after the line id `after`)."""
        args = {"execution_id": execution_id, "after": after, "limit": limit}
        return Request(Op.logs, executions.LogPage, args)

    @watch_operation
    def watch(
        execution_id: str,
        *,
        after_event: int = 0,
        after_log: int = 0,
        events: bool = True,
        logs: bool = True,
    ) -> Request[executions.WatchItem]:
        """Events and log lines as they happen, in order; the last item is the `End`."""
        args = {"execution_id": execution_id, "after_event": after_event}
        args |= {"after_log": after_log, "events": events, "logs": logs}
        return Request(Op.watch, executions.WatchItem, args)

    @operation
    def cancel(execution_id: str) -> Request[executions.Cancelled]:
        """Cancel an execution: its container is stopped and it ends CANCELLED."""
        return Request(Op.cancel, executions.Cancelled, {"execution_id": execution_id})

    @operation
    def nodes() -> Request[cluster.NodePage]:
        """The cluster's nodes with role, tags, free capacity and executions."""
        return Request(Op.nodes, cluster.NodePage)

    @operation
    def node(node_id: str) -> Request[cluster.Node]:
        return Request(Op.node, cluster.Node, {"node_id": node_id})

    @operation
    def drain(node_id: str) -> Request[cluster.NodeRecord]:
        """Give a node no new work (admin); what runs there finishes."""
        return Request(Op.drain, cluster.NodeRecord, {"node_id": node_id})

    @operation
    def undrain(node_id: str) -> Request[cluster.NodeRecord]:
        return Request(Op.undrain, cluster.NodeRecord, {"node_id": node_id})

    @operation
    def heartbeat(node_id: str) -> Request[cluster.NodeRecord]:
        return Request(Op.heartbeat, cluster.NodeRecord, {"node_id": node_id})

    @operation
    def cluster_status() -> Request[cluster.ClusterStatus]:
        return Request(Op.cluster_status, cluster.ClusterStatus)

    @operation
    def cluster_events(
        *, after: int | None = None, limit: int = 100
    ) -> Request[cluster.ClusterEventPage]:
        """The cluster feed: node joins, losses and drains, and execution state changes, after
        the event id `after` or (None) the latest `limit`; non-admins see their own only."""
        args = {"after": after, "limit": limit}
        return Request(Op.cluster_events, cluster.ClusterEventPage, args)

    @feed_operation
    def watch_cluster(*, after: int | None = None) -> Request[cluster.ClusterWatchItem]:
        """The cluster feed as it grows, after the event id `after` (None: from now on)."""
        return Request(Op.watch_cluster, cluster.ClusterWatchItem, {"after": after})

    @operation
    def create_token(
        *,
        role: Literal["join", "user"] = "user",
        ttl_s: float | None = None,
        description: str = "",
        node_id: str | None = None,
        node_type: str | None = None,
        eternal: bool = False,
    ) -> Request[cluster.Token]:
        """Issue a token (admin): `join` for one node (`node_id`) to register once, `user`
        for the execution API. `ttl_s` None: the role's default; `eternal`: no expiry (user)."""
        args = {
            "role": role,
            "ttl_s": ttl_s,
            "description": description,
            "node_id": node_id,
            "node_type": node_type,
            "eternal": eternal,
        }
        return Request(Op.create_token, cluster.Token, args)

    @operation
    def tokens(*, revoked: bool = False) -> Request[cluster.TokenPage]:
        """Every token's metadata, never a secret (admin); `revoked` includes ended ones."""
        return Request(Op.list_tokens, cluster.TokenPage, {"revoked": revoked})

    @operation
    def revoke_token(token_id: str) -> Request[cluster.RevokedToken]:
        """Revoke a token by id (admin): it stops working everywhere within a second."""
        return Request(Op.revoke_token, cluster.RevokedToken, {"token_id": token_id})

    @operation
    def rotate_admin_token() -> Request[cluster.AdminToken]:
        """A new admin token; every earlier one of the tenant stops working."""
        return Request(Op.rotate_admin, cluster.AdminToken, {})

    @operation
    def rotate_join_secret(
        secret: str, *, node_types: builtins.list[str] | None = None
    ) -> Request[cluster.TokenInfo]:
        """Replace the cluster join secret (`ray up`); earlier ones are revoked."""
        args = {"secret": secret, "node_types": node_types}
        return Request(Op.rotate_join_secret, cluster.TokenInfo, args)

    @operation
    def put_secret(name: str, data: dict[str, str]) -> Request[secret_bodies.Secret]:
        """Write a secret of your tenant: a new version holding exactly these KEY -> VALUE
        pairs. Returns its metadata; its values are never returned by any call."""
        return Request(Op.put_secret, secret_bodies.Secret, {"name": name, "data": dict(data)})

    @operation
    def secrets() -> Request[secret_bodies.SecretPage]:
        """Your tenant's secrets: names, keys and versions."""
        return Request(Op.secrets, secret_bodies.SecretPage)

    @operation
    def secret(name: str) -> Request[secret_bodies.Secret]:
        """One secret's metadata (NotFound if your tenant has none of that name)."""
        return Request(Op.secret, secret_bodies.Secret, {"name": name})

    @operation
    def delete_secret(name: str) -> Request[secret_bodies.SecretDeleted]:
        """Delete a secret with every version."""
        return Request(Op.delete_secret, secret_bodies.SecretDeleted, {"name": name})
