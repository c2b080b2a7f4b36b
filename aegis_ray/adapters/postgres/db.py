"""Connection pool to PostgreSQL, with jsonb as Python dicts and the schema migrated on connect."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import asyncpg

from aegis_ray.adapters.postgres.migrations import migrate

CONNECT_TIMEOUT_S = 10.0


class StoreUnavailable(RuntimeError):
    """PostgreSQL cannot be reached (or refuses us); the message names host:port, never secrets."""


def where(dsn: str) -> str:
    """host:port of a DSN, for messages: the credentials in it must never be shown."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "the configured database"
    if not parts.scheme.startswith("postgres"):
        return "the configured database"
    hosts = parts.netloc.rpartition("@")[2] or "localhost"
    if "," not in hosts and not hosts.endswith("]") and ":" not in hosts:
        hosts += ":5432"
    return hosts


async def _init(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, schema="pg_catalog", encoder=json.dumps, decoder=json.loads, format="text"
        )


async def connect(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool to ``dsn`` and bring the schema up to date; StoreUnavailable if unreachable."""
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=_init, timeout=CONNECT_TIMEOUT_S
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        # OSError covers refused/unreachable; PostgresError covers auth and missing database.
        raise StoreUnavailable(f"PostgreSQL at {where(dsn)} is unavailable: {err}") from err
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
    except BaseException:
        await pool.close()
        raise
    return pool
