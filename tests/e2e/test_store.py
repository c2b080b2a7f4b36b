"""The PostgreSQL store against a real embedded PostgreSQL server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import asyncpg
import pytest

from aegis_ray.adapters.postgres.db import StoreUnavailable, connect
from aegis_ray.adapters.postgres.embedded import EmbeddedPostgres
from aegis_ray.adapters.postgres.executions import ExecutionStore
from aegis_ray.adapters.postgres.migrations import available
from aegis_ray.adapters.postgres.nodes import NodeStore
from aegis_ray.adapters.postgres.tokens import JoinRefused, TokenStore
from aegis_ray.core.models.execution import ExecutionState

pytestmark = pytest.mark.e2e

S = ExecutionState
T = TypeVar("T")
MANIFEST = {"apiVersion": "100monkeys.ai/v1", "kind": "Agent", "metadata": {"name": "hello"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"), port=free_port(), database="store")
    try:
        yield server.start()
    finally:
        server.stop()
        server.remove()


def with_pool(dsn: str, body: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run ``body`` with a fresh pool in its own event loop (pools belong to one loop)."""

    async def main() -> T:
        pool = await connect(dsn, max_size=4)
        try:
            return await body(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def tenant() -> str:
    # A tenant per test keeps tests independent while they share one database.
    return f"t-{uuid.uuid4().hex[:8]}"


async def new_execution(store: ExecutionStore, tenant_id: str, name: str = "hello") -> Any:
    return await store.create(
        tenant_id=tenant_id, name=name, manifest=MANIFEST, max_retries=1, timeout_s=30.0
    )


def test_create_commits_row_and_submitted_event(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        rec = await new_execution(store, tenant())
        assert (rec.state, rec.attempt, rec.version) == (S.PENDING, 1, 1)
        # Visible from an unrelated connection: committed, not just written.
        other = await asyncpg.connect(pg_dsn)
        try:
            row = await other.fetchrow("SELECT state, manifest FROM executions WHERE id=$1", rec.id)
            kinds = await other.fetch(
                "SELECT kind, to_state, message FROM execution_events WHERE execution_id=$1",
                rec.id,
            )
        finally:
            await other.close()
        assert row["state"] == "PENDING"
        assert json.loads(row["manifest"]) == MANIFEST
        assert [tuple(k) for k in kinds] == [("state", "PENDING", "submitted")]
        body_json = json.loads(json.dumps(rec.to_dict()))
        assert body_json["id"] == str(rec.id) and body_json["state"] == "PENDING"
        assert body_json["manifest"] == MANIFEST

    with_pool(pg_dsn, body)


def test_concurrent_transitions_from_same_state_exactly_one_wins(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        for _ in range(5):
            rec = await new_execution(store, tenant())
            results = await asyncio.gather(
                *(
                    store.transition(
                        rec.id, to=S.SCHEDULED, expected=[S.PENDING], attempt=1, node_id=n
                    )
                    for n in ("node-a", "node-b")
                )
            )
            winners = [r for r in results if r is not None]
            assert len(winners) == 1
            now = await store.get(rec.id, tenant_id=None)
            assert now is not None and now.node_id == winners[0].node_id and now.version == 2
            states = [e.to_state for e in await store.events(rec.id, tenant_id=None)]
            assert states == ["PENDING", "SCHEDULED"]

    with_pool(pg_dsn, body)


def test_lifecycle_sets_timestamps_and_records_events_in_order(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        rec = await new_execution(store, tenant())
        await store.set_reason(rec.id, "waiting for capacity", attempt=1)
        steps = [(S.PENDING, S.SCHEDULED), (S.SCHEDULED, S.STARTING), (S.STARTING, S.RUNNING)]
        for frm, to in steps:
            moved = await store.transition(
                rec.id, to=to, expected=[frm], attempt=1, node_id="n1", message=f"to {to}"
            )
            assert moved is not None and moved.state == to
        assert moved.started_at is not None and moved.finished_at is None
        assert moved.reason is None  # the waiting reason no longer applies
        done = await store.transition(
            rec.id, to=S.SUCCEEDED, expected=[S.RUNNING], attempt=1, exit_code=0, message="ok"
        )
        assert done is not None
        assert done.finished_at is not None and done.exit_code == 0 and done.version == 6
        events = await store.events(rec.id, tenant_id=None)
        assert [e.id for e in events] == sorted(e.id for e in events)
        assert [(e.kind, e.from_state, e.to_state) for e in events] == [
            ("state", None, "PENDING"),
            ("placement", None, None),
            ("state", "PENDING", "SCHEDULED"),
            ("state", "SCHEDULED", "STARTING"),
            ("state", "STARTING", "RUNNING"),
            ("state", "RUNNING", "SUCCEEDED"),
        ]
        later = await store.events(rec.id, tenant_id=None, after_id=events[3].id)
        assert [e.to_state for e in later] == ["RUNNING", "SUCCEEDED"]

    with_pool(pg_dsn, body)


def test_terminal_row_never_changes(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        rec = await new_execution(store, tenant())
        gone = await store.transition(
            rec.id, to=S.CANCELLED, expected=[S.PENDING], reason="cancelled by user"
        )
        assert gone is not None and gone.finished_at is not None
        with pytest.raises(ValueError, match="illegal transition"):
            await store.transition(rec.id, to=S.RUNNING, expected=[S.CANCELLED])
        # Even a caller that believes it is still PENDING loses, as does any reason update.
        assert await store.transition(rec.id, to=S.SCHEDULED, expected=[S.PENDING]) is None
        assert await store.set_reason(rec.id, "still waiting", attempt=1) is False
        after = await store.get(rec.id, tenant_id=None)
        assert after == gone

    with_pool(pg_dsn, body)


def test_stale_attempt_loses_and_retry_starts_next_attempt(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        rec = await new_execution(store, tenant())
        for frm, to in [(S.PENDING, S.SCHEDULED), (S.SCHEDULED, S.STARTING)]:
            await store.transition(rec.id, to=to, expected=[frm], attempt=1, node_id="n1")
        assert (
            await store.transition(rec.id, to=S.RUNNING, expected=[S.STARTING], attempt=2) is None
        )
        retried = await store.transition(
            rec.id, to=S.PENDING, expected=[S.STARTING], attempt=1, new_attempt=True,
            reason="node lost",
        )  # fmt: skip
        assert retried is not None
        assert (retried.attempt, retried.state, retried.node_id) == (2, S.PENDING, None)
        assert retried.reason == "node lost"
        # The old attempt's worker wakes up late: it must not touch attempt 2.
        assert await store.transition(rec.id, to=S.FAILED, expected=[S.PENDING], attempt=1) is None
        assert await store.set_reason(rec.id, "stale", attempt=1) is False
        last = (await store.events(rec.id, tenant_id=None))[-1]
        assert (last.attempt, last.from_state, last.to_state) == (2, "STARTING", "PENDING")

    with_pool(pg_dsn, body)


def test_set_reason_adds_event_only_when_text_changes(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        rec = await new_execution(store, tenant())
        for text in ["no node has 8 CPUs free", "no node has 8 CPUs free", "node n2 joining"]:
            assert await store.set_reason(rec.id, text, attempt=1) is True
        placement = [e.message for e in await store.events(rec.id, tenant_id=None)][1:]
        assert placement == ["no node has 8 CPUs free", "node n2 joining"]
        now = await store.get(rec.id, tenant_id=None)
        assert now is not None and now.reason == "node n2 joining" and now.state == S.PENDING

    with_pool(pg_dsn, body)


def test_other_tenant_sees_nothing(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        owner, stranger = tenant(), tenant()
        rec = await new_execution(store, owner)
        await store.append_logs(rec.id, 1, [(0, time.time(), "stdout", "secret output")])
        assert await store.get(rec.id, tenant_id=stranger) is None
        assert await store.list(tenant_id=stranger) == []
        assert await store.events(rec.id, tenant_id=stranger) == []
        assert await store.logs(rec.id, tenant_id=stranger) == []
        assert (await store.get(rec.id, tenant_id=owner)) == (
            await store.get(rec.id, tenant_id=None)
        )
        assert len(await store.logs(rec.id, tenant_id=owner)) == 1

    with_pool(pg_dsn, body)


def test_keyset_paging_returns_every_row_exactly_once(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        who = tenant()
        made = [await new_execution(store, who, name=f"a{i % 3}") for i in range(23)]
        # Ties on created_at are where naive paging skips or repeats rows.
        await pool.execute(
            "UPDATE executions SET created_at = '2030-01-01T00:00:00Z' WHERE id = ANY($1)",
            [r.id for r in made[5:12]],
        )
        seen: list[Any] = []
        cursor: tuple[Any, Any] = (None, None)
        while True:
            page = await store.list(tenant_id=who, limit=5, before=cursor[0], before_id=cursor[1])
            seen += page
            if len(page) < 5:
                break
            cursor = (page[-1].created_at, page[-1].id)
        assert sorted(r.id for r in seen) == sorted(r.id for r in made)
        keys = [(r.created_at, r.id) for r in seen]
        assert keys == sorted(keys, reverse=True)
        assert await store.count(tenant_id=who) == 23
        named = await store.list(tenant_id=who, name="a1", states=["PENDING"], limit=100)
        assert len(named) == await store.count(tenant_id=who, name="a1") == 8
        assert await store.list(tenant_id=who, states=["RUNNING"]) == []

    with_pool(pg_dsn, body)


def test_logs_batch_of_2000_lines_reads_back_in_order(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        rec = await new_execution(store, tenant())
        t0 = time.time()
        lines = [
            (i, t0 + i / 1000, "stderr" if i % 7 == 0 else "stdout", f"line {i}")
            for i in range(2000)
        ]
        lines[10] = (10, lines[10][1], "stdout", "nul\x00byte and bad \udcff surrogate ✓")
        started = time.monotonic()
        assert await store.append_logs(rec.id, 1, lines) == 2000
        assert time.monotonic() - started < 5
        got: list[Any] = []
        after = 0
        while page := await store.logs(rec.id, tenant_id=None, after_id=after, limit=700):
            got += page
            after = page[-1].id
        assert len(got) == 2000
        assert [g.line for g in got[:3]] == ["line 0", "line 1", "line 2"]
        assert got[10].line == "nul\ufffdbyte and bad \ufffd surrogate ✓"
        assert [g.line for g in got[11:]] == [text for _, _, _, text in lines[11:]]
        assert [g.stream for g in got] == [s for _, _, s, _ in lines]
        assert abs(got[-1].ts.timestamp() - lines[-1][1]) < 1e-3
        assert await store.append_logs(rec.id, 1, []) == 0

    with_pool(pg_dsn, body)


def test_a_log_batch_stored_twice_is_stored_once_and_the_cursor_resumes(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        rec = await new_execution(store, tenant())
        assert await store.last_log_seq(rec.id, 1) == -1
        batch = [(n, time.time(), "stdout", f"line {n}") for n in range(5)]
        assert await store.append_logs(rec.id, 1, batch) == 5
        # A retried activity sends an overlapping batch: only the new lines are added.
        overlap = batch[3:] + [(n, time.time(), "stdout", f"line {n}") for n in range(5, 8)]
        assert await store.append_logs(rec.id, 1, overlap) == 3
        assert await store.last_log_seq(rec.id, 1) == 7
        assert await store.last_log_seq(rec.id, 2) == -1
        got = await store.logs(rec.id, tenant_id=None)
        assert [g.line for g in got] == [f"line {n}" for n in range(8)]

    with_pool(pg_dsn, body)


def test_new_log_lines_and_events_notify_listeners(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        rec = await new_execution(store, tenant())
        heard: asyncio.Queue[str] = asyncio.Queue()
        def on_notify(*args: Any) -> None:
            heard.put_nowait(args[3])  # (connection, pid, channel, payload)

        async with pool.acquire() as conn:
            await conn.add_listener("aegis_execution", on_notify)
            await store.append_logs(rec.id, 1, [(0, time.time(), "stdout", "hello")])
            assert await asyncio.wait_for(heard.get(), 10) == str(rec.id)
            await store.add_event(rec.id, kind="info", message="something happened")
            assert await asyncio.wait_for(heard.get(), 10) == str(rec.id)
            await conn.remove_listener("aegis_execution", on_notify)

    with_pool(pg_dsn, body)


def test_attempts_upsert_and_first_end_wins_and_delete_cascades(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        rec = await new_execution(store, tenant())
        for node in ("n1", "n2"):  # a retried activity records the placement again
            await store.start_attempt(
                rec.id, 1, node_id=node, ray_node_id="r" + node, placement_group="pg1"
            )
        assert await store.end_attempt(rec.id, 1, outcome="LOST", reason="node died") is True
        assert await store.end_attempt(rec.id, 1, outcome="SUCCEEDED", reason=None) is False
        assert await store.end_attempt(rec.id, 2, outcome="CANCELLED", reason="user") is True
        attempts = await store.attempts(rec.id)
        assert [(a.attempt, a.node_id, a.outcome) for a in attempts] == [
            (1, "n2", "LOST"),
            (2, None, "CANCELLED"),
        ]
        assert attempts[0].started_at is not None and attempts[0].ended_at is not None
        assert json.dumps([a.to_dict() for a in attempts])
        await store.add_event(rec.id, kind="info", message="cancel requested")
        with pytest.raises(ValueError, match="kind 'bogus'"):
            await store.add_event(rec.id, kind="bogus", message="x")
        assert await store.delete(rec.id) is True
        assert await store.get(rec.id, tenant_id=None) is None
        assert await store.attempts(rec.id) == []
        assert await store.events(rec.id, tenant_id=None) == []

    with_pool(pg_dsn, body)


def test_non_terminal_lists_only_live_executions(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        store = ExecutionStore(pool)
        who = tenant()
        live, done = await new_execution(store, who), await new_execution(store, who)
        await store.transition(done.id, to=S.CANCELLED, expected=[S.PENDING])
        ids = {r.id for r in await store.non_terminal()}
        assert live.id in ids and done.id not in ids

    with_pool(pg_dsn, body)


def test_concurrent_migrations_on_a_fresh_database_are_safe(pg_dsn: str) -> None:
    name = f"fresh_{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        admin = await asyncpg.connect(pg_dsn)
        await admin.execute(f"CREATE DATABASE {name}")
        dsn = pg_dsn.rsplit("/", 1)[0] + "/" + name
        try:
            pools = await asyncio.gather(connect(dsn), connect(dsn))
            try:
                rows = await pools[0].fetch("SELECT version FROM schema_migrations ORDER BY 1")
                assert [r["version"] for r in rows] == [v for v, _, _ in available()]
                # Schema usable from both pools.
                store = ExecutionStore(pools[1])
                rec = await new_execution(store, "t")
                assert await ExecutionStore(pools[0]).get(rec.id, tenant_id="t") is not None
            finally:
                for p in pools:
                    await p.close()
        finally:
            await admin.execute(f"DROP DATABASE {name}")
            await admin.close()

    asyncio.run(main())


def test_tokens_verify_until_revoked_or_expired(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        tokens = TokenStore(pool)
        who = tenant()
        secret = await tokens.create(tenant_id=who, role="user", description="ci")
        assert secret.startswith("aegis_") and len(secret) > 40
        digest = hashlib.sha256(secret.encode()).hexdigest()
        stored = await pool.fetchval(
            "SELECT token_hash FROM api_tokens WHERE token_hash = $1", digest
        )
        assert stored == digest  # only the hash is kept
        rec = await tokens.verify(secret)
        assert rec is not None and (rec.tenant_id, rec.role) == (who, "user")
        assert await tokens.verify(secret + "x") is None
        assert await tokens.verify("") is None
        assert await tokens.revoke(rec.id) is True
        assert await tokens.revoke(rec.id) is False
        assert await tokens.verify(secret) is None

        short = await tokens.create(tenant_id=who, role="join", ttl_s=0.3, node_id="n-short")
        assert await tokens.verify(short) is not None
        await asyncio.sleep(0.6)
        assert await tokens.verify(short) is None
        with pytest.raises(ValueError, match="node_id"):
            await tokens.create(tenant_id=who, role="join")

        # A join token is spent once, for its node, in the caller's transaction.
        join = await tokens.create(tenant_id=who, role="join", node_id="n-j", node_type="edge")
        async with pool.acquire() as conn:
            with pytest.raises(JoinRefused, match="for node 'n-j'"):
                await tokens.redeem_join(conn, join, node_id="n-other", node_type="edge")
            with pytest.raises(JoinRefused, match="edge node"):
                await tokens.redeem_join(conn, join, node_id="n-j", node_type="hybrid")
            async with conn.transaction():
                spent = await tokens.redeem_join(conn, join, node_id="n-j", node_type="edge")
            assert spent.redeemed_at is not None and spent.tenant_id == who
            with pytest.raises(JoinRefused, match="used already"):
                await tokens.redeem_join(conn, join, node_id="n-j", node_type="edge")
        assert await tokens.verify(join) is None

        with pytest.raises(ValueError, match="role 'root'"):
            await tokens.create(tenant_id=who, role="root")
        admin_secret = "aegis_" + uuid.uuid4().hex
        first = await tokens.ensure_admin(admin_secret)
        again = await tokens.ensure_admin(admin_secret)
        assert first.id == again.id and first.role == "admin" and first.tenant_id == "default"
        assert (await tokens.verify(admin_secret)) == first

    with_pool(pg_dsn, body)


def test_nodes_upsert_get_list_status_heartbeat(pg_dsn: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        nodes = NodeStore(pool)
        nid = f"node-{uuid.uuid4().hex[:6]}"
        first = await nodes.upsert(
            {"id": nid, "type": "worker", "tags": ["gpu"], "resources": {"CPU": 2}, "status": "up"}
        )
        assert first.tags == ["gpu"] and first.resources == {"CPU": 2} and first.labels == {}
        second = await nodes.upsert({"id": nid, "region": "eu"})
        assert (second.type, second.region, second.registered_at) == (
            "worker",
            "eu",
            first.registered_at,
        )
        assert await nodes.set_status(nid, "draining") is True
        assert await nodes.heartbeat(nid) is True
        got = await nodes.get(nid)
        assert got is not None and got.status == "draining"
        assert got.last_heartbeat is not None and got.last_heartbeat >= second.last_heartbeat
        assert nid in [n.id for n in await nodes.list()]
        assert await nodes.heartbeat("no-such-node") is False
        with pytest.raises(ValueError, match="unknown node fields: colour"):
            await nodes.upsert({"id": nid, "colour": "red"})

    with_pool(pg_dsn, body)


def test_closed_port_raises_store_unavailable_naming_host_port() -> None:
    port = free_port()  # nothing listens there any more
    dsn = f"postgresql://aegis:s3cret-pw@127.0.0.1:{port}/aegis"
    with pytest.raises(StoreUnavailable) as info:
        asyncio.run(connect(dsn))
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "s3cret-pw" not in str(info.value)
