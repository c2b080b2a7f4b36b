"""The control plane's operations, independent of transport.

REST (aegis_ray/api/rest.py, nodes.py) and gRPC (aegis_ray/api/grpc_api.py) are thin layers
over this class: both authenticate with `authenticate`, call one method, and turn an
`ApiProblem` into their own status. Results are the REST API's JSON bodies, shaped as the
contract's models (aegis_ray/contract), which REST declares and checks as its response models;
the gRPC layer converts them to messages field by field, so both transports carry the same data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from aegis_ray import __version__
from aegis_ray.adapters import metrics
from aegis_ray.adapters.postgres.changes import feed_for
from aegis_ray.adapters.postgres.records import ExecutionRecord
from aegis_ray.adapters.postgres.tokens import JoinRefused
from aegis_ray.adapters.ray.cluster_state import ClusterView, live_cluster
from aegis_ray.api.auth import Caller, TokenCache
from aegis_ray.api.context import Connections, TemporalUnavailable
from aegis_ray.api.errors import ApiProblem, not_found
from aegis_ray.api.limits import Limits, RateLimit, StreamLimits
from aegis_ray.api.secret_operations import SecretOperations
from aegis_ray.contract.cluster import JoinSecretRequest, NodeIdentity, TokenRequest
from aegis_ray.core.interleave import Interleaver
from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.models.execution import TERMINAL_STATES, ExecutionState
from aegis_ray.core.models.loading import MAX_MANIFEST_BYTES, Problem, parse_agent, unstorable
from aegis_ray.core.models.node import NodeStatus, NodeType
from aegis_ray.core.naming import SEARCH_AGENT, SEARCH_TENANT, WORKFLOW_NAME, workflow_id
from aegis_ray.core.placement.demand import demand_of
from aegis_ray.core.placement.dimensions import Resources
from aegis_ray.core.placement.fit import NodeFacts, PlanResult, plan

# Watchers are woken by PostgreSQL notifications; this is only the backstop for a lost one.
FOLLOW_FALLBACK_S = 5.0
USERS = ("admin", "user")
ADMINS = ("admin",)
# Registration: a join token (first time) or the node's own credential (again).
JOINERS = ("join", "node")
# Heartbeats: the node's own credential, or an admin.
NODES = ("node", "admin")
# Default lifetimes of new tokens (TokenRequest.ttl_s unset).
JOIN_TOKEN_TTL_S = 600.0
USER_TOKEN_TTL_S = 3600.0
# An id prefix as people type it (`aegis get 7a3f2feb`): at least 4 characters of a UUID.
ID_PREFIX = re.compile(r"^[0-9a-f][0-9a-f-]{3,35}$")
CLUSTER_EVENTS_MAX = 1000
MAX_IDEMPOTENCY_KEY = 255
# Event and log ids are PostgreSQL bigints.
_ID_RANGE = (-(1 << 63), (1 << 63) - 1)


def read_manifest(data: str | bytes | dict[str, Any], source: str) -> AgentManifest:
    """Validate a manifest given as text (YAML/JSON) or as a structured document."""
    if isinstance(data, str | bytes) and len(data) > MAX_MANIFEST_BYTES:
        raise ApiProblem("too_large", f"{source}: manifest over 1 MiB")
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    return parse_agent(data, source=source)


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


# What a non-admin sees of a node: what it needs to place its work, not where the node is nor
# what other tenants run there.
TENANT_NODE_FIELDS = ("node_id", "role", "status", "tags", "total", "free", "registered", "region")


def for_caller(node: dict[str, Any], who: Caller) -> dict[str, Any]:
    if who.role in ADMINS:
        return node
    return {k: node[k] for k in (*TENANT_NODE_FIELDS, "executions") if k in node}


def node_dict(n: NodeFacts, record: Any = None) -> dict[str, Any]:
    def cap(c: Resources) -> dict[str, Any]:
        return c._asdict()

    out: dict[str, Any] = {
        "node_id": n.node_id,
        "ray_node_id": n.ray_node_id,
        "role": n.role,
        "status": n.status,
        "tags": sorted(n.tags),
        "total": cap(n.total),
        "free": cap(n.free),
        "registered": record is not None,
    }
    if record is not None:
        out |= {
            "region": record.region,
            "version": record.version,
            "address": record.address,
            "last_heartbeat": record.last_heartbeat.isoformat() if record.last_heartbeat else None,
        }
    return out


def _parse_labels(labels: list[str] | None) -> dict[str, str] | None:
    """`key=value` filters on the manifest's metadata.labels."""
    out: dict[str, str] = {}
    for item in labels or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ApiProblem("bad_request", f"label={item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out or None


def shown(value: Any) -> Any:
    """A value fit for an error body (JSON, UTF-8): strings with a NUL or a lone surrogate
    as their repr."""
    return repr(value) if unstorable(value) else value


def refuse_problems(problems: list[Problem]) -> None:
    """A bad_request naming each field, if there are problems."""
    if problems:
        message = "; ".join(f"{p.path}: {p.message}" for p in problems)
        body = [{"path": p.path, "message": p.message, "value": shown(p.value)} for p in problems]
        raise ApiProblem("bad_request", message, problems=body)


def plain_text(**fields: Any) -> None:
    """Refuse parameters PostgreSQL cannot hold (NUL, lone surrogates, NaN), by name."""
    refuse_problems(unstorable(fields))


def cursor_ids(**cursors: int | None) -> None:
    """Refuse an event or line id outside PostgreSQL's bigint, by name."""
    low, high = _ID_RANGE
    for name, value in cursors.items():
        if value is not None and not low <= value <= high:
            raise ApiProblem(
                "bad_request",
                f"{name}={value}: not an id (ids are between {low} and {high})",
                problems=[{"path": name, "message": "out of range", "value": str(value)}],
            )


def check_idempotency_key(key: str) -> None:
    """An Idempotency-Key: 1 to 255 printable ASCII characters (a UUID is a good one)."""
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not all(" " <= ch <= "~" for ch in key):
        raise ApiProblem(
            "bad_request",
            f"idempotency key {key!r}: expected 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII"
            " characters (a UUID will do)",
            problems=[{"path": "idempotency_key", "message": "invalid", "value": shown(key)}],
        )


def _tenant_scope(who: Caller) -> str | None:
    """Whose rows a caller sees in cluster-wide views: admins all (None), others their own."""
    return None if who.role in ADMINS else who.tenant_id


def _parse_cursor(before: str | None) -> tuple[datetime | None, uuid.UUID | None]:
    """Paging cursor "created_at|id" (as returned in next_before); ties on time stay exact."""
    if not before:
        return None, None
    plain_text(before=before)
    when, _, ident = before.partition("|")
    try:
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is not None:
            moment.astimezone(UTC)  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return moment, uuid.UUID(ident) if ident else None
    except (ValueError, OverflowError):
        raise ApiProblem(
            "bad_request",
            f"before={before!r} is not a paging cursor (a next_before, or a time from year 1"
            " to 9999)",
            problems=[{"path": "before", "message": "not a paging cursor", "value": before}],
        ) from None


def _finished(rec: ExecutionRecord) -> ApiProblem:
    return ApiProblem("already_finished", f"execution is {rec.state.value}", state=rec.state.value)


class ControlPlane(SecretOperations):
    """One replica's view of the control plane: its connections, token cache and worker."""

    def __init__(self, conns: Connections, tokens: TokenCache, worker: Any = None) -> None:
        self.conns = conns
        self.tokens = tokens
        self.worker = worker
        self.limits = Limits.from_config(conns.config.limits) if conns is not None else Limits()
        self.streams = StreamLimits(self.limits)
        self.submits = RateLimit(self.limits.submit_per_s, self.limits.submit_burst)

    # ------------------------------------------------------------ auth and health

    async def authenticate(self, secret: str | None, roles: tuple[str, ...]) -> Caller:
        """Who holds this bearer token; refuses unknown tokens and the wrong role."""
        if not secret:
            raise ApiProblem("unauthenticated", "missing bearer token")
        # The cache is trusted only while this process hears of token changes (a revocation
        # anywhere clears it at once).
        listening = await feed_for(await self.conns.pool()).watch_tokens(self.tokens.clear)
        who = self.tokens.get(secret) if listening else None
        if who is None:
            record = await (await self.conns.tokens()).verify(secret)
            if record is None:
                raise ApiProblem("unauthenticated", "invalid, expired or revoked token")
            who = Caller(
                tenant_id=record.tenant_id,
                role=record.role,
                token_id=str(record.id),
                node_id=record.node_id,
            )
            if record.role != "join":  # single-use: always asked again
                self.tokens.put(secret, who)
        if who.role not in roles:
            raise ApiProblem(
                "forbidden",
                f"a {who.role} token cannot do this; needs one of: {', '.join(roles)}",
            )
        return who

    async def health(self) -> dict[str, Any]:
        checks = await self.conns.check()
        checks["worker"] = await self._worker_status()
        ok = all(v == "ok" for v in checks.values())
        return {"status": "ok" if ok else "degraded", "version": __version__, **checks}

    async def _worker_status(self) -> str:
        """Is the Temporal worker alive? Without it submissions would never move."""
        if self.worker is None:
            return "unknown"
        return str(await self.worker.status())

    # ------------------------------------------------------------ executions

    async def live_view(self) -> ClusterView:
        """Ray's live nodes merged with the registry (draining, down, gone)."""
        return await live_cluster(await self.conns.nodes())

    async def plan(self, manifest: AgentManifest) -> dict[str, Any]:
        view = await self.live_view()
        return plan_body(plan(demand_of(manifest), view.nodes))

    async def submit(self, who: Caller, manifest: AgentManifest) -> dict[str, Any]:
        return (await self.submit_once(who, manifest, None))[0]

    async def submit_once(
        self, who: Caller, manifest: AgentManifest, idempotency_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Submit; with an idempotency key, once per key and tenant for 24 hours: a second
        submission with the key answers with the first's execution. (body, created)."""
        self.submits.take(who.token_id, "too many submissions with this token")
        document = manifest.to_document()
        store = await self.conns.executions()
        digest = None
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
            digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
            first = await store.first_of_key(who.tenant_id, idempotency_key, digest)
            if first is not None:
                return first.to_dict() | {"workflow_id": workflow_id(first.id)}, False
        view = await self.live_view()
        result = plan(demand_of(manifest), view.nodes)
        if not result.feasible:
            raise ApiProblem("unschedulable", result.summary(), plan=plan_body(result))
        await self._check_secret_references(who, manifest)
        c = self.conns
        client = await c.temporal()  # fail before writing anything if Temporal is down
        row = {
            "tenant_id": who.tenant_id,
            "name": manifest.metadata.name,
            "manifest": document,
            "max_retries": manifest.spec.execution.max_retries,
            "timeout_s": manifest.spec.execution.timeout,
        }
        if idempotency_key is None or digest is None:
            rec = await store.create(**row)
        else:
            rec, created = await store.create_once(
                key=idempotency_key, manifest_sha256=digest, **row
            )
            if not created:  # a concurrent submission with the key won
                return rec.to_dict() | {"workflow_id": workflow_id(rec.id)}, False
        wid = workflow_id(rec.id)
        try:
            await client.start_workflow(
                WORKFLOW_NAME,
                str(rec.id),
                id=wid,
                task_queue=c.config.task_queue,
                request_eager_start=True,  # the worker runs in this process
                **await self._workflow_labels(rec),
            )
        except Exception as err:
            # Nothing half-written: without its workflow the row would never move.
            await store.delete(rec.id)
            raise TemporalUnavailable(f"could not start the execution workflow: {err}") from err
        metrics.SUBMITTED.inc(tenant=who.tenant_id)
        body = rec.to_dict() | {"workflow_id": wid}
        if not result.fits_now:
            body["waiting"] = result.summary()
        return body, True

    async def _workflow_labels(self, rec: ExecutionRecord) -> dict[str, Any]:
        """What the Temporal UI shows of an execution's workflow: a summary, a memo, and the
        agent and tenant as search attributes (where the server has them)."""
        name = rec.name or "?"
        out: dict[str, Any] = {
            "static_summary": f"{name} (tenant {rec.tenant_id})",
            "static_details": f"aegis execution {rec.id} of agent {name}",
            "memo": {"agent": name, "tenant": rec.tenant_id, "execution_id": str(rec.id)},
        }
        if await self.conns.search_attributes():
            out["search_attributes"] = TypedSearchAttributes(
                [
                    SearchAttributePair(SearchAttributeKey.for_keyword(SEARCH_AGENT), name),
                    SearchAttributePair(
                        SearchAttributeKey.for_keyword(SEARCH_TENANT), rec.tenant_id
                    ),
                ]
            )
        return out

    async def list_executions(
        self,
        who: Caller,
        *,
        states: list[str] | None = None,
        name: str | None = None,
        limit: int = 50,
        before: str | None = None,
        labels: list[str] | None = None,
    ) -> dict[str, Any]:
        if not 1 <= limit <= 500:
            raise ApiProblem("bad_request", f"limit={limit}: must be between 1 and 500")
        upper = [s.upper() for s in states] if states else None
        for s in upper or []:
            if s not in ExecutionState.__members__:
                raise ApiProblem(
                    "bad_request",
                    f"unknown state {s!r}; accepted: " + ", ".join(ExecutionState.__members__),
                )
        plain_text(name=name, label=labels or [])
        cursor, cursor_id = _parse_cursor(before)
        rows = await (await self.conns.executions()).list(
            tenant_id=who.tenant_id,
            states=upper,
            name=name,
            limit=limit,
            before=cursor,
            before_id=cursor_id,
            labels=_parse_labels(labels),
        )
        items = [r.to_dict() for r in rows]
        next_before = (
            f"{items[-1]['created_at']}|{items[-1]['id']}" if len(items) == limit else None
        )
        return {"items": items, "next_before": next_before}

    async def _resolve(self, who: Caller, execution_id: str) -> uuid.UUID:
        """An execution id, or an unambiguous prefix of one of the caller's executions."""
        try:
            return uuid.UUID(execution_id)
        except ValueError:
            pass
        prefix = execution_id.strip().lower()
        if not ID_PREFIX.match(prefix):
            raise not_found(f"execution {execution_id!r}")
        found = await (await self.conns.executions()).with_prefix(prefix, tenant_id=who.tenant_id)
        if not found:
            raise not_found(f"execution with an id starting {execution_id!r}")
        if len(found) > 1:
            shown = ", ".join(str(f) for f in found)
            raise ApiProblem(
                "bad_request",
                f"execution id prefix {execution_id!r} is ambiguous: it starts {shown}"
                f"{' and more' if len(found) >= 5 else ''}; give more characters",
                matches=[str(f) for f in found],
            )
        return found[0]

    async def _record(self, who: Caller, execution_id: str) -> ExecutionRecord:
        eid = await self._resolve(who, execution_id)
        rec = await (await self.conns.executions()).get(eid, tenant_id=who.tenant_id)
        if rec is None:
            raise not_found(f"execution {execution_id}")
        return rec

    async def get_execution(self, who: Caller, execution_id: str) -> dict[str, Any]:
        rec = await self._record(who, execution_id)
        attempts = await (await self.conns.executions()).attempts(rec.id)
        return rec.to_dict() | {"attempts": [a.to_dict() for a in attempts]}

    async def events(self, who: Caller, execution_id: str, after: int = 0) -> dict[str, Any]:
        cursor_ids(after=after)
        rec = await self._record(who, execution_id)
        rows = await (await self.conns.executions()).events(
            rec.id, tenant_id=who.tenant_id, after_id=after
        )
        return {"items": [e.to_dict() for e in rows]}

    async def logs(
        self, who: Caller, execution_id: str, after: int = 0, limit: int = 1000
    ) -> dict[str, Any]:
        if not 1 <= limit <= 10_000:
            raise ApiProblem("bad_request", f"limit={limit}: must be between 1 and 10000")
        cursor_ids(after=after)
        rec = await self._record(who, execution_id)
        rows = await (await self.conns.executions()).logs(
            rec.id, tenant_id=who.tenant_id, after_id=after, limit=limit
        )
        return {"items": [r.to_dict() for r in rows]}

    async def watch(
        self,
        who: Caller,
        execution_id: str,
        *,
        after_event: int = 0,
        after_log: int = 0,
        events: bool = True,
        logs: bool = True,
    ) -> AsyncIterator[dict[str, Any]]:
        """Events ({"event": row}) and log lines ({"log": row}) as they are stored, each kind
        in id order and lines within their attempt's run (see interleave.py), until the
        execution has ended and nothing is left: then {"end": {"state": ...}}.

        Checks the execution exists and the cursors are ids before the first item (a wrong id
        fails at once, not in the middle of a stream).
        """
        cursor_ids(after_event=after_event, after_log=after_log)
        rec = await self._record(who, execution_id)
        store = await self.conns.executions()
        cursors = {"event": after_event, "log": after_log}
        if not events and not logs:  # asking for neither means both (as in gRPC's defaults)
            events = logs = True

        order = Interleaver()

        async def fetch(kind: str, wanted: bool) -> list[Any]:
            if not wanted:
                return []
            if kind == "event":
                rows = await store.events(rec.id, tenant_id=who.tenant_id, after_id=cursors[kind])
            else:
                rows = await store.logs(
                    rec.id, tenant_id=who.tenant_id, after_id=cursors[kind], limit=1000
                )
            if rows:
                cursors[kind] = rows[-1].id
            return list(rows)

        async def batch() -> list[dict[str, Any]]:
            # Lines first: a line is stored after its attempt's RUNNING event, so that event is
            # in this batch or an earlier one. Lines again when an attempt's run ended: those
            # stored just before that state change belong before it.
            lines = await fetch("log", logs)
            changes = await fetch("event", events)
            if logs and order.ends_a_window(changes):
                lines += await fetch("log", logs)
            return [{kind: row.to_dict()} for kind, row in order.merge(changes, lines)]

        async def stream() -> AsyncIterator[dict[str, Any]]:
            # Subscribed before the first read: a change between a read and the wait is kept.
            with store.subscribe(rec.id) as changes:
                while True:
                    if items := await batch():
                        for item in items:
                            yield item
                        continue
                    now = await store.get(rec.id, tenant_id=who.tenant_id)
                    if now is None or now.state in TERMINAL_STATES:
                        # Rows written just before the final state change.
                        while items := await batch():
                            for item in items:
                                yield item
                        yield {"end": {"state": now.state.value if now else None}}
                        return
                    await changes.wait(FOLLOW_FALLBACK_S)

        return self._bounded(who, stream())

    def _bounded(
        self, who: Caller, items: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[dict[str, Any]]:
        """A stream within the caller's stream limits and the streams' lifetime (429 now if
        the caller has too many open)."""
        return self.streams.bounded(items, who.token_id, who.tenant_id)

    async def cancel(self, who: Caller, execution_id: str) -> dict[str, Any]:
        rec = await self._record(who, execution_id)
        if rec.state in TERMINAL_STATES:
            raise _finished(rec)
        client = await self.conns.temporal()
        try:
            await client.get_workflow_handle(rec.workflow_id or workflow_id(rec.id)).cancel()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise TemporalUnavailable(f"could not cancel: {err}") from err
            # The workflow has just ended: report the row as it is now.
            raise _finished(await self._record(who, execution_id)) from None
        await (await self.conns.executions()).add_event(
            rec.id, kind="info", message="cancel requested"
        )
        return {"id": str(rec.id), "state": rec.state.value, "cancel_requested": True}

    # ------------------------------------------------------------ the cluster feed

    async def cluster_events(
        self, who: Caller, *, after: int | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """Node and execution events after the id `after`, or the latest `limit` ones;
        a non-admin sees only their own tenant's executions."""
        if not 1 <= limit <= CLUSTER_EVENTS_MAX:
            raise ApiProblem(
                "bad_request", f"limit={limit}: must be between 1 and {CLUSTER_EVENTS_MAX}"
            )
        cursor_ids(after=after)
        store = await self.conns.cluster_events()
        rows = await store.list(tenant_id=_tenant_scope(who), after=after, limit=limit)
        return {"items": [r.to_dict() for r in rows]}

    async def watch_cluster(
        self, who: Caller, *, after: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Events of the cluster feed ({"event": row}) after `after` (None: from now on), as
        they are stored; the stream does not end by itself."""
        cursor_ids(after=after)
        store = await self.conns.cluster_events()
        scope = _tenant_scope(who)

        async def stream() -> AsyncIterator[dict[str, Any]]:
            with store.subscribe() as changes:
                cursor = await store.last_id() if after is None else after
                while True:
                    rows = await store.list(tenant_id=scope, after=cursor, limit=500)
                    for row in rows:
                        yield {"event": row.to_dict()}
                    if rows:
                        cursor = rows[-1].id
                        continue
                    await changes.wait(FOLLOW_FALLBACK_S)

        return self._bounded(who, stream())

    # ------------------------------------------------------------ nodes and tokens

    async def list_nodes(self, who: Caller) -> dict[str, Any]:
        """Every node; a non-admin sees what placing its work needs (TENANT_NODE_FIELDS) and
        only its own tenant's executions."""
        view = await self.live_view()
        records = {r.id: r for r in await (await self.conns.nodes()).list()}
        placed = await (await self.conns.executions()).placed_per_node(
            tenant_id=_tenant_scope(who)
        )
        held = await self._leases_by_node()
        items = [
            for_caller(
                node_dict(n, records.get(n.node_id))
                | {"executions": placed.get(n.node_id, 0), "leases": held.get(n.node_id, [])},
                who,
            )
            for n in view.nodes
        ]
        return {"items": items, "implicit_head": view.implicit_head}

    async def get_node(self, who: Caller, node_id: str) -> dict[str, Any]:
        plain_text(node_id=node_id)
        view = await self.live_view()
        record = await (await self.conns.nodes()).get(node_id)
        for n in view.nodes:
            if n.node_id == node_id:
                held = await self._leases_by_node()
                return for_caller(node_dict(n, record) | {"leases": held.get(node_id, [])}, who)
        raise not_found(f"node {node_id!r}")

    async def _leases_by_node(self) -> dict[str, list[str]]:
        """The singleton leases held now (unexpired), by the node of their holder."""
        held: dict[str, list[str]] = {}
        for lease in await (await self.conns.leases()).list():
            if lease["held"]:
                held.setdefault(lease["node_id"], []).append(lease["name"])
        return held

    async def register(self, who: Caller, secret: str, identity: NodeIdentity) -> dict[str, Any]:
        """A node joining: record its identity, hand it what its raylet needs to join Ray.

        With a join token (single-use, for this node id and type) the node is new, or has no
        live credential any more: the token is spent and the node gets its own credential, in
        one transaction. A node with a credential re-registers with it, and only itself.
        """
        refuse_problems(unstorable(identity.model_dump(mode="json")))
        n = identity.node
        resources = n.resources.model_dump() if n.resources else {}
        tokens = await self.conns.tokens()
        store = await self.conns.nodes()
        credential: str | None = None
        row: dict[str, Any] = {
            "id": n.id,
            "type": n.type.value,
            "region": n.region,
            "tags": list(n.tags),
            "resources": resources,
            "ray_node_id": identity.ray_node_id,
            "address": identity.address,
            "version": identity.version,
        }
        if who.role == "node" and who.node_id != n.id:
            raise ApiProblem(
                "forbidden", f"this is the credential of node {who.node_id!r}, not of {n.id!r}"
            )
        pool = await self.conns.pool()
        async with pool.acquire() as conn, conn.transaction():
            # One registration of a node id at a time, whatever token it comes with.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "node:" + n.id)
            existing = await store.get(n.id, conn=conn)
            if who.role == "join":
                if await tokens.has_node_credential(conn, n.id):
                    raise ApiProblem(
                        "forbidden",
                        f"node {n.id!r} is registered and has a credential: it re-registers with"
                        " that (AEGIS_HOME/nodes/<id>/credential); an admin may revoke it"
                        " (`aegis token revoke`) to let a join token register the node anew",
                    )
                try:
                    token = await tokens.redeem_join(
                        conn, secret, node_id=n.id, node_type=n.type.value
                    )
                except JoinRefused as err:
                    raise ApiProblem("forbidden", str(err)) from None
                credential = await tokens.issue_node_credential(
                    conn, node_id=n.id, tenant_id=token.tenant_id
                )
                row["labels"] = {"tenant": token.tenant_id}
            drained = existing is not None and existing.status == NodeStatus.DRAINING
            row["status"] = NodeStatus.DRAINING if drained else NodeStatus.READY
            record = await store.upsert(row, conn=conn)
        out: dict[str, Any] = {
            "node": record.to_dict(),
            "ray": self._ray_join_info(with_token=not identity.has_ray_token),
        }
        if credential is not None:
            out["credential"] = credential
        return out

    def _ray_join_info(self, *, with_token: bool) -> dict[str, Any]:
        import ray

        config = self.conns.config
        info: dict[str, Any] = {
            "address": ray.get_runtime_context().gcs_address,
            "auth_mode": config.ray_auth_mode,
        }
        if with_token and config.ray_auth_mode == "token" and config.ray_token_path:
            # The deployment names the first orchestrator's file; a replica on another
            # orchestrator reads the token its own raylet was started with.
            path = Path(config.ray_token_path)
            if not path.exists() and os.environ.get("RAY_AUTH_TOKEN_PATH"):
                path = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
            info["token"] = path.read_text().strip()
        return info

    async def heartbeat(self, who: Caller, node_id: str) -> dict[str, Any]:
        """A node saying it is alive (its own credential, or an admin); answers with its
        registry row (status: draining...)."""
        if who.role not in ADMINS and who.node_id != node_id:
            raise ApiProblem(
                "forbidden", f"only node {node_id!r} itself (its credential) may heartbeat for it"
            )
        plain_text(node_id=node_id)
        store = await self.conns.nodes()
        if not await store.heartbeat(node_id):
            raise not_found(f"registered node {node_id!r}")
        return await self._node_record(node_id)

    async def set_node_status(self, node_id: str, status: str) -> dict[str, Any]:
        plain_text(node_id=node_id)
        if not await (await self.conns.nodes()).set_status(node_id, status):
            raise not_found(f"registered node {node_id!r}")
        # The feed shows the drain now, not at the reconciler's next round.
        record = await self._node_record(node_id)
        view = await self.live_view()
        seen = next((n.status for n in view.nodes if n.node_id == node_id), None)
        if seen is not None:
            await (await self.conns.cluster_events()).node_observed(node_id, str(seen))
        return record

    async def _node_record(self, node_id: str) -> dict[str, Any]:
        record = await (await self.conns.nodes()).get(node_id)
        if record is None:
            raise not_found(f"registered node {node_id!r}")
        return record.to_dict()

    async def cluster_status(self) -> dict[str, Any]:
        view = await self.live_view()
        counts: dict[str, int] = {}
        for n in view.nodes:
            counts[n.status] = counts.get(n.status, 0) + 1
        return {
            "nodes": counts,
            "orchestrators": sum(1 for n in view.nodes if n.role == NodeType.ORCHESTRATOR),
            "implicit_head": view.implicit_head,
            "version": __version__,
        }

    async def create_token(self, who: Caller, req: TokenRequest) -> dict[str, Any]:
        """Issue a token: `join` for one node joining the cluster once, `user` for the
        execution API. No token lives forever unless the admin asks (`eternal`, user only)."""
        refuse_problems(unstorable(req.model_dump(mode="json")))
        tenant = req.tenant_id or who.tenant_id
        ttl: float | None = req.ttl_s
        most = self.limits.join_token_max_ttl_s
        if req.role == "join":
            if req.eternal:
                raise _invalid("eternal", req.eternal, "a join token always expires")
            if not req.node_id:
                raise _invalid(
                    "node_id", None, "a join token is for one node: give the node id it is for"
                )
            if ttl is None:
                ttl = min(JOIN_TOKEN_TTL_S, most)
            elif ttl > most:
                raise _invalid("ttl_s", ttl, f"a join token lives at most {most:g}s")
        else:
            if req.node_id or req.node_type:
                raise _invalid("node_id", req.node_id, "only a join token is for a node")
            if req.eternal:
                if ttl is not None:
                    raise _invalid("ttl_s", ttl, "give ttl_s or eternal, not both")
            else:
                ttl = USER_TOKEN_TTL_S if ttl is None else ttl
                if ttl > self.limits.token_max_ttl_s:
                    raise _invalid("ttl_s", ttl, f"at most {self.limits.token_max_ttl_s:g}s")
        store = await self.conns.tokens()
        secret = await store.create(
            tenant_id=tenant,
            role=req.role,
            description=req.description,
            ttl_s=ttl,
            node_id=req.node_id,
            node_type=req.node_type,
        )
        record = await store.verify(secret)
        return {
            "token": secret,
            "id": str(record.id) if record else None,
            "role": req.role,
            "tenant_id": tenant,
            "ttl_s": ttl,
            "node_id": req.node_id,
            "node_type": req.node_type,
        }

    async def list_tokens(self, who: Caller, *, include_revoked: bool = False) -> dict[str, Any]:
        """Every token's metadata, never a secret (admin)."""
        rows = await (await self.conns.tokens()).list(include_revoked=include_revoked)
        return {"items": [r.to_dict() for r in rows]}

    async def revoke_token(self, who: Caller, token_id: str) -> dict[str, Any]:
        """Revoke a token by id; every orchestrator stops accepting it at once (admin)."""
        store = await self.conns.tokens()
        try:
            record = await store.get(token_id)
        except ValueError as err:
            raise not_found(f"token {token_id!r} ({err})") from None
        if record is None:
            raise not_found(f"token {token_id!r}")
        revoked = await store.revoke(record.id)
        self.tokens.clear()  # this process at once, others by notification
        return {"id": str(record.id), "revoked": revoked}

    async def rotate_admin(self, who: Caller) -> dict[str, Any]:
        """A new admin token for the caller's tenant; every earlier one stops working."""
        secret, record = await (await self.conns.tokens()).rotate_admin(who.tenant_id)
        self.tokens.clear()
        return {"token": secret, "id": str(record.id), "tenant_id": record.tenant_id}

    async def rotate_join_secret(self, who: Caller, req: JoinSecretRequest) -> dict[str, Any]:
        """Replace the cluster join secret of `ray up` (admin): earlier ones are revoked."""
        try:
            record = await (await self.conns.tokens()).rotate_join_secret(
                req.secret, node_types=req.node_types, tenant_id=who.tenant_id
            )
        except ValueError as err:
            raise _invalid("node_types", req.node_types, str(err)) from None
        self.tokens.clear()
        return record.to_dict()


def _invalid(field: str, value: Any, message: str) -> ApiProblem:
    return ApiProblem(
        "invalid_request",
        f"body.{field}: {message} (got {value!r})",
        problems=[{"path": f"body.{field}", "message": message, "value": value}],
    )
