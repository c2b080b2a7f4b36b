"""Idempotent submission in the store, against a real PostgreSQL (issue 11, item 5): one
execution per key and tenant, also when the same key races; another manifest is a conflict."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import asyncpg
import pytest

from aegis_ray.adapters.postgres.executions import ExecutionStore, IdempotencyConflict
from tests.e2e.test_store import MANIFEST, pg_dsn, tenant, with_pool

pytestmark = pytest.mark.e2e
__all__ = ["pg_dsn"]  # the fixture, shared with test_store.py


def create_once(
    store: ExecutionStore, tenant_id: str, key: str, sha: str = "a" * 64
) -> Awaitable[tuple[Any, bool]]:
    return store.create_once(
        key=key, manifest_sha256=sha, tenant_id=tenant_id, name="hello", manifest=MANIFEST,
        max_retries=0, timeout_s=None,
    )  # fmt: skip


def test_concurrent_submissions_with_one_key_make_one_execution(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        t = tenant()
        results = await asyncio.gather(*(create_once(store, t, "retry-1") for _ in range(8)))
        ids = {rec.id for rec, _ in results}
        assert len(ids) == 1, ids
        assert sorted(created for _, created in results) == [False] * 7 + [True]
        assert await store.count(tenant_id=t) == 1

    with_pool(pg_dsn, body)


def test_a_key_is_per_tenant_and_another_manifest_under_it_is_a_conflict(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        t1, t2 = tenant(), tenant()
        (first, _), (other, created) = [await create_once(store, t, "k") for t in (t1, t2)]
        assert created and first.id != other.id
        with pytest.raises(IdempotencyConflict) as info:
            await create_once(store, t1, "k", sha="b" * 64)
        assert info.value.execution_id == str(first.id)

    with_pool(pg_dsn, body)


def test_an_expired_key_makes_a_new_execution_and_a_deleted_one_frees_its_key(
    pg_dsn: str,
) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        t = tenant()
        first, _ = await create_once(store, t, "old")
        await pool.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"
            " WHERE tenant_id = $1",
            t,
        )
        second, created = await create_once(store, t, "old", sha="b" * 64)
        assert created and second.id != first.id
        # An execution removed because its workflow could not start leaves its key free.
        await store.delete(second.id)
        third, created = await create_once(store, t, "old")
        assert created and third.id not in (first.id, second.id)

    with_pool(pg_dsn, body)
