"""Followers' cursors against a real PostgreSQL: a row written first but committed last is not
skipped (issue 11, item 4): ids commit in id order, per execution and in the cluster feed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from aegis_ray.adapters.postgres.cluster_events import ClusterEventStore
from aegis_ray.adapters.postgres.executions import ExecutionStore
from aegis_ray.core.models.execution import ExecutionState
from tests.e2e.test_store import new_execution, pg_dsn, tenant, with_pool

pytestmark = pytest.mark.e2e
__all__ = ["pg_dsn"]  # the fixture, shared with test_store.py

# Long enough for a writer that does not wait to have committed; a writer that waits (the
# fix) waits for the slow transaction whatever this is.
SETTLE_S = 1.5


async def read_across_a_slow_commit(
    pool: asyncpg.Pool,
    slow_write: Callable[[asyncpg.Connection], Awaitable[Any]],
    fast_write: Callable[[], Awaitable[Any]],
    read_after: Callable[[int], Awaitable[list[tuple[int, str]]]],
    start: int,
) -> list[str]:
    """A slow transaction writes first and commits last; a fast writer writes meanwhile; a
    follower reads with its cursor before and after the slow commit. What it saw, in order."""
    seen: list[str] = []
    cursor = start

    async def follow() -> None:
        nonlocal cursor
        for row_id, text in await read_after(cursor):
            seen.append(text)
            cursor = row_id

    async with pool.acquire() as slow:
        tx = slow.transaction()
        await tx.start()
        await slow_write(slow)
        fast = asyncio.create_task(fast_write())
        await asyncio.wait({fast}, timeout=SETTLE_S)
        await follow()
        await tx.commit()
    await asyncio.wait_for(fast, 30)
    await follow()
    return seen


def test_a_log_line_committed_late_is_not_skipped_by_the_cursor(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> list[str]:
        store = ExecutionStore(pool)
        rec = await new_execution(store, tenant())

        async def slow(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO execution_logs (execution_id, attempt, seq, ts, stream, line)"
                " VALUES ($1, 1, 0, now(), 'stdout', 'first')",
                rec.id,
            )

        async def fast() -> None:
            await store.append_logs(rec.id, 1, [(1, time.time(), "stdout", "second")])

        async def read(after: int) -> list[tuple[int, str]]:
            rows = await store.logs(rec.id, tenant_id=None, after_id=after)
            return [(r.id, r.line) for r in rows]

        return await read_across_a_slow_commit(pool, slow, fast, read, 0)

    assert with_pool(pg_dsn, body) == ["first", "second"]


def test_an_event_committed_late_is_not_skipped_by_the_cursor(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> list[str]:
        store = ExecutionStore(pool)
        rec = await new_execution(store, tenant())
        start = (await store.events(rec.id, tenant_id=None))[-1].id

        async def slow(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO execution_events (execution_id, attempt, kind, message)"
                " VALUES ($1, 1, 'info', 'first')",
                rec.id,
            )

        async def fast() -> None:
            await store.transition(
                rec.id, to=ExecutionState.SCHEDULED, expected=[ExecutionState.PENDING],
                message="second",
            )  # fmt: skip

        async def read(after: int) -> list[tuple[int, str]]:
            rows = await store.events(rec.id, tenant_id=None, after_id=after)
            return [(r.id, r.message) for r in rows]

        return await read_across_a_slow_commit(pool, slow, fast, read, start)

    assert with_pool(pg_dsn, body) == ["first", "second"]


def test_a_cluster_event_committed_late_is_not_skipped_by_the_cursor(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> list[str]:
        store = ExecutionStore(pool)
        feed = ClusterEventStore(pool)
        rec = await new_execution(store, tenant())
        start = await feed.last_id()

        async def slow(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO cluster_events (kind, node_id, to_state, message)"
                " VALUES ('node', 'n-order', 'down', 'first')"
            )

        async def fast() -> None:
            # Another execution's state change: its copy in the feed is written meanwhile.
            await store.transition(
                rec.id, to=ExecutionState.SCHEDULED, expected=[ExecutionState.PENDING],
                message="second",
            )  # fmt: skip

        async def read(after: int) -> list[tuple[int, str]]:
            rows = await feed.list(tenant_id=None, after=after)
            return [(r.id, r.message) for r in rows]

        return await read_across_a_slow_commit(pool, slow, fast, read, start)

    assert with_pool(pg_dsn, body) == ["first", "second"]
