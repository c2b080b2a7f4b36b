"""Execution rows and their history: events, log lines and attempts.

Every state change is a compare-and-set (``transition``): it applies only if the row is still in
an expected state (and attempt), so a stale worker can never overwrite newer state, and a
terminal row never changes again.
"""

from __future__ import annotations

import builtins
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from aegis_ray.adapters.postgres.changes import Subscription, feed_for
from aegis_ray.adapters.postgres.records import (
    AttemptRecord,
    EventRecord,
    ExecutionRecord,
    LogRecord,
)
from aegis_ray.core.models.execution import (
    PLACED_STATES,
    TERMINAL_STATES,
    ExecutionState,
    can_transition,
)
from aegis_ray.core.naming import workflow_id

EVENT_KINDS = ("state", "info", "placement")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_TERMINAL = sorted(s.value for s in TERMINAL_STATES)
_PLACED = [s.value for s in PLACED_STATES]
_COLUMNS = (
    "id, tenant_id, name, manifest, state, attempt, max_retries, timeout_s, version, reason,"
    " node_id, exit_code, workflow_id, created_at, updated_at, started_at, finished_at"
)

# Moves the row only if it is in an expected state, not terminal, and (if given) on the attempt.
_TRANSITION = f"""
UPDATE executions SET
    state = $2,
    attempt = attempt + CASE WHEN $6 THEN 1 ELSE 0 END,
    version = version + 1,
    updated_at = now(),
    reason = $9,
    node_id = COALESCE($7, CASE WHEN $6 THEN NULL ELSE node_id END),
    exit_code = CASE WHEN $6 THEN NULL ELSE COALESCE($8, exit_code) END,
    started_at = CASE WHEN $2 = '{ExecutionState.RUNNING.value}' THEN now()
                      WHEN $6 THEN NULL ELSE started_at END,
    finished_at = CASE WHEN $2 = ANY($4::text[]) THEN now() ELSE finished_at END
WHERE id = $1 AND state = ANY($3::text[]) AND state <> ALL($4::text[])
  AND ($5::integer IS NULL OR attempt = $5)
RETURNING {_COLUMNS}
"""

_ADD_EVENT = """
INSERT INTO execution_events (execution_id, attempt, kind, from_state, to_state, message, node_id)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
"""


IDEMPOTENCY_HOURS = 24
# Claims a key for an execution: new, or expired (then taken over); NULL if another holds it.
_CLAIM_KEY = f"""
INSERT INTO idempotency_keys (tenant_id, key, manifest_sha256, execution_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, key) DO UPDATE SET manifest_sha256 = EXCLUDED.manifest_sha256,
    execution_id = EXCLUDED.execution_id, created_at = now()
WHERE idempotency_keys.created_at <= now() - interval '{IDEMPOTENCY_HOURS} hours'
RETURNING execution_id
"""


class IdempotencyConflict(ValueError):
    """The idempotency key already made an execution, of another manifest."""

    def __init__(self, key: str, execution_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was used for another manifest (execution {execution_id})"
            f" in the last {IDEMPOTENCY_HOURS} hours; use a new key for a new request"
        )
        self.execution_id = execution_id


class _KeyTaken(Exception):
    """Rolls back a keyed create whose key another submission holds."""


def as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    """An execution id as a UUID; ValueError naming the bad value otherwise."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValueError(f"execution id {value!r} is not a UUID") from None


def _clean(text: str) -> str:
    # PostgreSQL text holds neither NUL nor lone surrogates; container output may have both.
    return _UNSTORABLE.sub("\ufffd", text)


class ExecutionStore:
    # Defines a method `list`: annotations in here say `builtins.list` for the type.
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self,
        *,
        tenant_id: str,
        name: str | None,
        manifest: dict[str, Any],
        max_retries: int,
        timeout_s: float | None,
        idempotency: tuple[str, str] | None = None,
    ) -> ExecutionRecord:
        """Insert a PENDING execution and its "submitted" event, committed together.

        Its workflow id is derived from its id (`naming.workflow_id`), so it is stored with it.
        `idempotency` (key, manifest digest): claimed in the same transaction (`create_once`).
        """
        if not tenant_id:
            raise ValueError("tenant_id must not be empty")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        eid = uuid.uuid4()
        pending = ExecutionState.PENDING.value
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO executions (id, tenant_id, name, manifest, state, max_retries,"
                f" timeout_s, workflow_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                f" RETURNING {_COLUMNS}",
                eid, tenant_id, name, manifest, pending, max_retries, timeout_s, workflow_id(eid),
            )  # fmt: skip
            if idempotency is not None:
                # A concurrent submission with the same key waits here for the first to commit,
                # then finds the key taken: it rolls back and answers with the first's.
                taken = await conn.fetchval(_CLAIM_KEY, tenant_id, *idempotency, eid)
                if taken is None:
                    raise _KeyTaken
            await conn.execute(_ADD_EVENT, eid, 1, "state", None, pending, "submitted", None)
        return ExecutionRecord.from_row(row)

    async def create_once(
        self,
        *,
        key: str,
        manifest_sha256: str,
        tenant_id: str,
        name: str | None,
        manifest: dict[str, Any],
        max_retries: int,
        timeout_s: float | None,
    ) -> tuple[ExecutionRecord, bool]:
        """`create`, once per idempotency key and tenant within IDEMPOTENCY_HOURS: (the new
        execution, True), or (the execution the key made, False). IdempotencyConflict if the
        key made one of another manifest."""
        for _ in range(3):  # a key that expires or is deleted between the two steps
            first = await self.first_of_key(tenant_id, key, manifest_sha256)
            if first is not None:
                return first, False
            try:
                rec = await self.create(
                    tenant_id=tenant_id, name=name, manifest=manifest, max_retries=max_retries,
                    timeout_s=timeout_s, idempotency=(key, manifest_sha256),
                )  # fmt: skip
            except _KeyTaken:
                continue
            return rec, True
        raise RuntimeError(f"idempotency key {key!r} changed hands three times in a row")

    async def first_of_key(self, tenant_id: str, key: str, sha: str) -> ExecutionRecord | None:
        """The execution the key made in the last IDEMPOTENCY_HOURS (None: none);
        IdempotencyConflict if it was made of a manifest with another digest."""
        row = await self.pool.fetchrow(
            "SELECT execution_id, manifest_sha256 FROM idempotency_keys WHERE tenant_id = $1"
            f" AND key = $2 AND created_at > now() - interval '{IDEMPOTENCY_HOURS} hours'",
            tenant_id, key,
        )  # fmt: skip
        if row is None:
            return None
        if row["manifest_sha256"] != sha:
            raise IdempotencyConflict(key, str(row["execution_id"]))
        return await self.get(row["execution_id"], tenant_id=tenant_id)

    async def delete(self, execution_id: uuid.UUID | str) -> bool:
        """Remove an execution and all its history (used when its workflow could not start)."""
        status = await self.pool.execute(
            "DELETE FROM executions WHERE id = $1", as_uuid(execution_id)
        )
        return bool(status == "DELETE 1")

    async def get(
        self, execution_id: uuid.UUID | str, *, tenant_id: str | None
    ) -> ExecutionRecord | None:
        """The execution, or None if missing or owned by another tenant (None = any tenant)."""
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM executions WHERE id = $1"
            " AND ($2::text IS NULL OR tenant_id = $2)",
            as_uuid(execution_id),
            tenant_id,
        )
        return ExecutionRecord.from_row(row) if row else None

    async def list(
        self,
        *,
        tenant_id: str,
        states: Iterable[str] | None = None,
        name: str | None = None,
        limit: int = 50,
        before: datetime | None = None,
        before_id: uuid.UUID | None = None,
        labels: dict[str, str] | None = None,
    ) -> builtins.list[ExecutionRecord]:
        """A tenant's executions, newest first.

        Page with the last row's ``created_at`` as ``before`` (and its ``id`` as ``before_id``,
        which makes paging exact even when two rows share a timestamp).
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        where, args = self._filter(tenant_id, states, name, labels)
        if before is not None and before_id is not None:
            args += [before, before_id]
            where += f" AND (created_at, id) < (${len(args) - 1}, ${len(args)})"
        elif before is not None:
            args.append(before)
            where += f" AND created_at < ${len(args)}"
        args.append(limit)
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM executions WHERE {where}"
            f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
            *args,
        )
        return [ExecutionRecord.from_row(r) for r in rows]

    async def count(
        self, *, tenant_id: str, states: Iterable[str] | None = None, name: str | None = None
    ) -> int:
        where, args = self._filter(tenant_id, states, name)
        total = await self.pool.fetchval(f"SELECT count(*) FROM executions WHERE {where}", *args)
        return int(total)

    @staticmethod
    def _filter(
        tenant_id: str,
        states: Iterable[str] | None,
        name: str | None,
        labels: dict[str, str] | None = None,
    ) -> tuple[str, builtins.list[Any]]:
        where = "tenant_id = $1"
        args: builtins.list[Any] = [tenant_id]
        if states is not None:
            args.append([ExecutionState(s).value for s in states])
            where += f" AND state = ANY(${len(args)}::text[])"
        if name is not None:
            args.append(name)
            where += f" AND name = ${len(args)}"
        if labels:
            # The manifest's metadata.labels hold every pair asked for.
            args.append(json.dumps(labels))
            where += f" AND manifest->'metadata'->'labels' @> (${len(args)}::text)::jsonb"
        return where, args

    async def with_prefix(self, prefix: str, *, tenant_id: str | None) -> builtins.list[uuid.UUID]:
        """Ids of the tenant's executions that start with `prefix` (at most 5, to name a few
        when it is ambiguous)."""
        rows = await self.pool.fetch(
            "SELECT id FROM executions WHERE id::text LIKE $1 || '%'"
            " AND ($2::text IS NULL OR tenant_id = $2) ORDER BY created_at DESC LIMIT 5",
            prefix.lower(),
            tenant_id,
        )
        return [r["id"] for r in rows]

    async def non_terminal(self) -> builtins.list[ExecutionRecord]:
        """Every execution not yet finished, oldest first (for reconcilers)."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM executions WHERE state <> ALL($1::text[])"
            " ORDER BY created_at, id",
            _TERMINAL,
        )
        return [ExecutionRecord.from_row(r) for r in rows]

    async def gauge_counts(self) -> tuple[dict[str, int], builtins.list[str | None]]:
        """Executions per state, and the reasons of the pending ones (for the gauges)."""
        rows = await self.pool.fetch("SELECT state, count(*) AS n FROM executions GROUP BY state")
        pending = await self.pool.fetch(
            "SELECT reason FROM executions WHERE state = $1", ExecutionState.PENDING.value
        )
        return {r["state"]: r["n"] for r in rows}, [r["reason"] for r in pending]

    async def placed_per_node(self, *, tenant_id: str | None = None) -> dict[str, int]:
        """How many unfinished executions each node holds (scheduled, starting or running);
        with `tenant_id`, only that tenant's."""
        rows = await self.pool.fetch(
            "SELECT node_id, count(*) AS n FROM executions"
            " WHERE state = ANY($1::text[]) AND node_id IS NOT NULL"
            " AND ($2::text IS NULL OR tenant_id = $2)"
            " GROUP BY node_id",
            _PLACED,
            tenant_id,
        )
        return {r["node_id"]: r["n"] for r in rows}

    async def transition(
        self,
        execution_id: uuid.UUID | str,
        *,
        to: ExecutionState,
        expected: Iterable[ExecutionState],
        attempt: int | None = None,
        message: str = "",
        node_id: str | None = None,
        exit_code: int | None = None,
        reason: str | None = None,
        new_attempt: bool = False,
    ) -> ExecutionRecord | None:
        """Move the execution to ``to`` if it is in one of ``expected``; None if the CAS lost.

        ``reason`` replaces the row's reason (None clears a stale waiting reason);
        ``new_attempt`` starts the next attempt (a retry back to PENDING).
        """
        to = ExecutionState(to)
        froms = [ExecutionState(s) for s in expected]
        if not froms:
            raise ValueError("transition needs at least one expected state")
        bad = [s.value for s in froms if not can_transition(s, to)]
        if bad:
            raise ValueError(f"illegal transition to {to.value} from {', '.join(bad)}")
        eid = as_uuid(execution_id)
        async with self.pool.acquire() as conn, conn.transaction():
            # Lock first so that the event records the state this change really came from.
            before = await conn.fetchval(
                "SELECT state FROM executions WHERE id = $1 FOR UPDATE", eid
            )
            if before is None:
                return None
            row = await conn.fetchrow(
                _TRANSITION, eid, to.value, [s.value for s in froms], _TERMINAL, attempt,
                new_attempt, node_id, exit_code, reason,
            )  # fmt: skip
            if row is None:
                return None
            await conn.execute(
                _ADD_EVENT, eid, row["attempt"], "state", before, to.value, message,
                row["node_id"],
            )  # fmt: skip
        return ExecutionRecord.from_row(row)

    async def set_reason(self, execution_id: uuid.UUID | str, reason: str, *, attempt: int) -> bool:
        """Set the waiting reason of a live attempt; False if the row moved on (terminal/attempt).

        A "placement" event is written only when the text changes, so polling does not spam.
        """
        eid = as_uuid(execution_id)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT reason, node_id FROM executions WHERE id = $1 AND attempt = $2"
                " AND state <> ALL($3::text[]) FOR UPDATE",
                eid, attempt, _TERMINAL,
            )  # fmt: skip
            if row is None:
                return False
            if row["reason"] != reason:
                await conn.execute(
                    "UPDATE executions SET reason = $2, version = version + 1, updated_at = now()"
                    " WHERE id = $1",
                    eid,
                    reason,
                )
                await conn.execute(
                    _ADD_EVENT, eid, attempt, "placement", None, None, reason, row["node_id"]
                )
        return True

    async def add_event(
        self,
        execution_id: uuid.UUID | str,
        *,
        kind: str,
        message: str,
        attempt: int | None = None,
        node_id: str | None = None,
    ) -> int | None:
        """Append an event (attempt defaults to the current one); its id, or None if no row."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")
        event_id = await self.pool.fetchval(
            "INSERT INTO execution_events (execution_id, attempt, kind, message, node_id)"
            " SELECT id, COALESCE($2, attempt), $3, $4, $5 FROM executions WHERE id = $1"
            " RETURNING id",
            as_uuid(execution_id), attempt, kind, message, node_id,
        )  # fmt: skip
        return int(event_id) if event_id is not None else None

    async def events(
        self, execution_id: uuid.UUID | str, *, tenant_id: str | None, after_id: int = 0
    ) -> builtins.list[EventRecord]:
        """Events after ``after_id`` in order; empty for another tenant's execution."""
        rows = await self.pool.fetch(
            "SELECT ev.* FROM execution_events ev JOIN executions e ON e.id = ev.execution_id"
            " WHERE ev.execution_id = $1 AND ev.id > $2 AND ($3::text IS NULL OR e.tenant_id = $3)"
            " ORDER BY ev.id",
            as_uuid(execution_id), after_id, tenant_id,
        )  # fmt: skip
        return [EventRecord.from_row(r) for r in rows]

    async def append_logs(
        self,
        execution_id: uuid.UUID | str,
        attempt: int,
        lines: Sequence[tuple[int, float, str, str]],
    ) -> int:
        """Store (seq, epoch ts, stream, text) lines in one statement, keeping their order.

        A line whose sequence number the attempt already has is skipped: storing a batch again
        (a retried activity) adds nothing. Returns how many lines were new.
        """
        if not lines:
            return 0
        seqs = [int(n) for n, _, _, _ in lines]
        ts = [float(t) for _, t, _, _ in lines]
        streams = [_clean(s) for _, _, s, _ in lines]
        texts = [_clean(x) for _, _, _, x in lines]
        status = await self.pool.execute(
            "INSERT INTO execution_logs (execution_id, attempt, seq, ts, stream, line)"
            " SELECT $1, $2, u.q, to_timestamp(u.t), u.s, u.l"
            " FROM unnest($3::int8[], $4::float8[], $5::text[], $6::text[])"
            " WITH ORDINALITY AS u(q, t, s, l, n)"
            " ORDER BY u.n"
            " ON CONFLICT (execution_id, attempt, seq) DO NOTHING",
            as_uuid(execution_id), attempt, seqs, ts, streams, texts,
        )  # fmt: skip
        return int(status.rsplit(" ", 1)[1])

    def subscribe(self, execution_id: uuid.UUID | str) -> Subscription:
        """Wake-ups for new events and lines of the execution (PostgreSQL notifications)."""
        return feed_for(self.pool).subscribe(execution_id)

    async def last_log_seq(self, execution_id: uuid.UUID | str, attempt: int) -> int:
        """The highest sequence number stored for the attempt; -1 if it has no lines yet."""
        value = await self.pool.fetchval(
            "SELECT max(seq) FROM execution_logs WHERE execution_id = $1 AND attempt = $2",
            as_uuid(execution_id), attempt,
        )  # fmt: skip
        return -1 if value is None else int(value)

    async def log_bytes(self, execution_id: uuid.UUID | str) -> int:
        """Bytes of output stored for the execution, every attempt together."""
        value = await self.pool.fetchval(
            "SELECT COALESCE(sum(octet_length(line)), 0) FROM execution_logs"
            " WHERE execution_id = $1",
            as_uuid(execution_id),
        )
        return int(value)

    async def logs(
        self,
        execution_id: uuid.UUID | str,
        *,
        tenant_id: str | None,
        after_id: int = 0,
        limit: int = 1000,
    ) -> builtins.list[LogRecord]:
        """Up to ``limit`` log lines after ``after_id`` in order; empty for another tenant."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        rows = await self.pool.fetch(
            "SELECT l.* FROM execution_logs l JOIN executions e ON e.id = l.execution_id"
            " WHERE l.execution_id = $1 AND l.id > $2 AND ($3::text IS NULL OR e.tenant_id = $3)"
            " ORDER BY l.id LIMIT $4",
            as_uuid(execution_id), after_id, tenant_id, limit,
        )  # fmt: skip
        return [LogRecord.from_row(r) for r in rows]

    async def start_attempt(
        self,
        execution_id: uuid.UUID | str,
        attempt: int,
        *,
        node_id: str | None,
        ray_node_id: str | None,
        placement_group: str | None,
    ) -> None:
        """Record where an attempt runs; repeating it (a retried activity) updates the row."""
        await self.pool.execute(
            "INSERT INTO execution_attempts"
            " (execution_id, attempt, node_id, ray_node_id, placement_group, started_at)"
            " VALUES ($1, $2, $3, $4, $5, now())"
            " ON CONFLICT (execution_id, attempt) DO UPDATE SET node_id = EXCLUDED.node_id,"
            " ray_node_id = EXCLUDED.ray_node_id, placement_group = EXCLUDED.placement_group,"
            " started_at = COALESCE(execution_attempts.started_at, EXCLUDED.started_at)",
            as_uuid(execution_id), attempt, node_id, ray_node_id, placement_group,
        )  # fmt: skip

    async def end_attempt(
        self, execution_id: uuid.UUID | str, attempt: int, *, outcome: str, reason: str | None
    ) -> bool:
        """Record how an attempt ended; the first end wins. False if it had already ended."""
        status = await self.pool.execute(
            "INSERT INTO execution_attempts (execution_id, attempt, ended_at, outcome, reason)"
            " VALUES ($1, $2, now(), $3, $4)"
            " ON CONFLICT (execution_id, attempt) DO UPDATE SET ended_at = EXCLUDED.ended_at,"
            " outcome = EXCLUDED.outcome, reason = EXCLUDED.reason"
            " WHERE execution_attempts.ended_at IS NULL",
            as_uuid(execution_id), attempt, outcome, reason or None,
        )  # fmt: skip
        return bool(status == "INSERT 0 1")

    async def attempts(self, execution_id: uuid.UUID | str) -> builtins.list[AttemptRecord]:
        rows = await self.pool.fetch(
            "SELECT * FROM execution_attempts WHERE execution_id = $1 ORDER BY attempt",
            as_uuid(execution_id),
        )
        return [AttemptRecord.from_row(r) for r in rows]
