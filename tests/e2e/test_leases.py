"""Leases with a fencing number against a real (embedded) PostgreSQL: one holder at a time, a
stale holder's writes refused, takeover after expiry, and a takeover that waits for a fenced
write in progress instead of overtaking it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import pytest

from aegis_ray.adapters.postgres.embedded import EmbeddedPostgres
from aegis_ray.adapters.postgres.leases import FencedOut, FencedPool, LeaseStore
from aegis_ray.adapters.postgres.nodes import NodeStore
from tests.e2e.test_store import free_port, with_pool

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"), port=free_port(), database="leases")
    try:
        yield server.start()
    finally:
        server.stop()


def test_one_holder_at_a_time_renewal_keeps_the_fencing_number(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        leases = LeaseStore(pool)
        a = await leases.acquire("one", "orch-1/a", "orch-1", ttl_s=30)
        assert a is not None and a.fencing == 1 and a.node_id == "orch-1"
        assert await leases.acquire("one", "orch-2/b", "orch-2", ttl_s=30) is None
        again = await leases.acquire("one", "orch-1/a", "orch-1", ttl_s=30)
        assert again is not None and again.fencing == 1 and again.expires_at >= a.expires_at
        (row,) = [r for r in await leases.list() if r["name"] == "one"]
        assert row["held"] and row["node_id"] == "orch-1" and row["holder"] == "orch-1/a"
        with pytest.raises(ValueError, match="ttl"):
            await leases.acquire("one", "orch-1/a", "orch-1", ttl_s=0)

    with_pool(pg_dsn, body)


def test_stale_holder_cannot_write_after_a_takeover(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        leases = LeaseStore(pool)
        old = await leases.acquire("sweep", "orch-1/a", "orch-1", ttl_s=0.5)
        assert old is not None
        stale = NodeStore(FencedPool(pool, old))  # type: ignore[arg-type]
        await stale.upsert({"id": "n-before", "type": "edge"})  # while held: written
        await asyncio.sleep(1.0)  # the holder stalls past its lease
        new = await leases.acquire("sweep", "orch-2/b", "orch-2", ttl_s=30)
        assert new is not None and new.fencing == old.fencing + 1
        with pytest.raises(FencedOut):
            await stale.upsert({"id": "n-stale", "type": "edge"})
        with pytest.raises(FencedOut):
            await stale.set_status("n-before", "draining")
        # The old holder cannot renew either: it has to see that it lost the lease.
        assert await leases.acquire("sweep", "orch-1/a", "orch-1", ttl_s=30) is None
        fresh = NodeStore(FencedPool(pool, new))  # type: ignore[arg-type]
        await fresh.upsert({"id": "n-after", "type": "edge"})
        ids = {n.id for n in await NodeStore(pool).list()}
        assert {"n-before", "n-after"} <= ids and "n-stale" not in ids
        assert (await NodeStore(pool).get("n-before")).status != "draining"  # type: ignore[union-attr]

    with_pool(pg_dsn, body)


def test_a_takeover_waits_for_the_write_in_progress(pg_dsn: str) -> None:
    """The fence is a share lock on the lease row: an expired holder that already passed the
    check finishes its write before the new holder's fencing number exists."""

    async def body(pool: asyncpg.Pool) -> None:
        leases = LeaseStore(pool)
        old = await leases.acquire("slow", "orch-1/a", "orch-1", ttl_s=0.3)
        assert old is not None
        fenced = FencedPool(pool, old)
        order: list[str] = []
        checked = asyncio.Event()

        async def slow_write() -> None:
            async with fenced.acquire() as conn:
                checked.set()
                await asyncio.sleep(1.5)  # the lease expires meanwhile
                await conn.execute("INSERT INTO nodes (id) VALUES ('n-slow')")
                order.append("write committed")

        async def take_over() -> None:
            await checked.wait()
            await asyncio.sleep(0.5)  # expired now
            lease = await leases.acquire("slow", "orch-2/b", "orch-2", ttl_s=30)
            assert lease is not None and lease.fencing == old.fencing + 1
            order.append("taken")

        t0 = time.monotonic()
        await asyncio.gather(slow_write(), take_over())
        assert order == ["write committed", "taken"], order
        assert time.monotonic() - t0 >= 1.4
        with pytest.raises(FencedOut):
            await fenced.execute("INSERT INTO nodes (id) VALUES ('n-late')")

    with_pool(pg_dsn, body)


def test_release_hands_over_at_once(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        leases = LeaseStore(pool)
        a = await leases.acquire("handover", "orch-1/a", "orch-1", ttl_s=300)
        assert a is not None and await leases.release(a)
        b = await leases.acquire("handover", "orch-3/c", "orch-3", ttl_s=300)
        assert b is not None and b.fencing == 2 and b.node_id == "orch-3"
        assert not await leases.release(a)  # a stale release changes nothing
        assert await leases.acquire("handover", "orch-1/a", "orch-1", ttl_s=300) is None

    with_pool(pg_dsn, body)
