"""Leases with a fencing number: work that must not run on two orchestrators at once.

A lease is a row (`leases`, migration 0014). `acquire` takes it when it is free or expired, or
renews it for its holder; each change of holder adds one to `fencing`. The holder's writes go
through `FencedPool`: every statement runs in a transaction that first locks the lease row
(FOR SHARE) and checks that the holder and the fencing number are still its own. A takeover
updates that row, so it waits for a write in progress to commit, and any write after it by the
former holder is refused with `FencedOut`: a holder that stalled past its lease (a long GC, a
frozen VM, a partition) writes nothing once another has taken over.
"""

from __future__ import annotations

import builtins
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


class FencedOut(RuntimeError):
    """This process no longer holds the lease it writes under."""


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    node_id: str
    fencing: int
    expires_at: datetime


def holder_id(node_id: str) -> str:
    """One process's name as a lease holder: node, host, pid and a random part (a restarted
    process is another holder, so its first acquire takes a new fencing number)."""
    return f"{node_id}/{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


_ACQUIRE = """
INSERT INTO leases AS l (name, holder, node_id, fencing, expires_at)
VALUES ($1, $2, $3, 1, now() + make_interval(secs => $4))
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    node_id = EXCLUDED.node_id,
    fencing = CASE WHEN l.holder = EXCLUDED.holder THEN l.fencing ELSE l.fencing + 1 END,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE now() END,
    expires_at = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING name, holder, node_id, fencing, expires_at
"""


class LeaseStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def acquire(self, name: str, holder: str, node_id: str, ttl_s: float) -> Lease | None:
        """Take or renew `name` for `ttl_s` seconds; None while another holder's is unexpired."""
        if ttl_s <= 0:
            raise ValueError(f"lease ttl must be positive, got {ttl_s}")
        row = await self.pool.fetchrow(_ACQUIRE, name, holder, node_id, float(ttl_s))
        return Lease(**dict(row)) if row else None

    async def release(self, lease: Lease) -> bool:
        """Give the lease up at once (a clean stop), so the next holder need not wait it out."""
        done = await self.pool.execute(
            "UPDATE leases SET expires_at = now() - interval '1 second'"
            " WHERE name = $1 AND holder = $2 AND fencing = $3",
            lease.name,
            lease.holder,
            lease.fencing,
        )
        return bool(done == "UPDATE 1")

    async def list(self) -> builtins.list[dict[str, Any]]:
        """Every lease with whether it is held now (unexpired)."""
        rows = await self.pool.fetch(
            "SELECT name, holder, node_id, fencing, acquired_at, expires_at,"
            " expires_at > now() AS held FROM leases ORDER BY name"
        )
        return [dict(r) for r in rows]


async def check_fence(conn: asyncpg.Connection, lease: Lease) -> None:
    """Inside a transaction: lock the lease row against a takeover until commit, and refuse if
    it is no longer `lease`'s (compare-and-set on holder and fencing number)."""
    ok = await conn.fetchval(
        "SELECT true FROM leases WHERE name = $1 AND holder = $2 AND fencing = $3 FOR SHARE",
        lease.name,
        lease.holder,
        lease.fencing,
    )
    if not ok:
        raise FencedOut(f"lease {lease.name} (fencing {lease.fencing}) is held by another")


class FencedPool:
    """A pool look-alike for the stores: each statement (or `acquire()` block) runs in its own
    transaction that holds the lease's fence first. Stores that open their own transaction on
    the acquired connection get a savepoint inside it."""

    def __init__(self, pool: asyncpg.Pool, lease: Lease) -> None:
        self.pool = pool
        self.lease = lease

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            await check_fence(conn, self.lease)
            yield conn

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            result: str = await conn.execute(query, *args)
            return result

    async def fetch(self, query: str, *args: Any) -> builtins.list[Any]:
        async with self.acquire() as conn:
            return list(await conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)
