"""Connection pool to PostgreSQL, with jsonb as Python dicts and the schema migrated on connect."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from aegis_ray.adapters.postgres.migrations import migrate

CONNECT_TIMEOUT_S = 10.0
# Backoff between tries while PostgreSQL is away: from half a second up to this, with jitter.
RETRY_MAX_WAIT_S = 10.0
T = TypeVar("T")


class StoreUnavailable(RuntimeError):
    """PostgreSQL cannot be reached (or refuses us); the message names host:port, never secrets."""


class StoreOutage(RuntimeError):
    """PostgreSQL stayed unreachable for longer than the outage the caller rides out."""


def unavailable(err: BaseException) -> bool:
    """Whether `err` means PostgreSQL is (for now) out of reach, not that the query is wrong."""
    if isinstance(err, StoreUnavailable | OSError | TimeoutError):  # OSError: refused, reset
        return True
    if isinstance(
        err,
        asyncpg.PostgresConnectionError  # the connection broke (class 08)
        | asyncpg.exceptions.OperatorInterventionError  # shutting down, starting up (57P)
        | asyncpg.exceptions.TooManyConnectionsError,
    ):
        return True
    # asyncpg's own "connection is closed" / "connection was closed in the middle of operation".
    return isinstance(err, asyncpg.InterfaceError) and "connection" in str(err)


async def ride_out(
    call: Callable[[], Awaitable[T]],
    *,
    bound_s: float,
    on_wait: Callable[[], None] | None = None,
) -> T:
    """`call()`, tried again with backoff while PostgreSQL is unavailable, for up to `bound_s`.

    `on_wait` runs before each pause (a Temporal heartbeat). Any other error is raised as is;
    an outage longer than the bound raises StoreOutage saying so.
    """

    def waiting(_: RetryCallState) -> None:
        if on_wait is not None:
            on_wait()

    retrying = AsyncRetrying(
        retry=retry_if_exception(unavailable),
        wait=wait_exponential_jitter(multiplier=0.5, max=RETRY_MAX_WAIT_S),
        stop=stop_after_delay(bound_s),
        before_sleep=waiting,
    )
    async def once() -> T:
        # A coroutine function of its own: tenacity awaits only what it sees as one (a lambda
        # returning a coroutine would come back unawaited).
        return await call()

    try:
        result: T = await retrying(once)
    except RetryError as err:
        last = err.last_attempt.exception()
        raise StoreOutage(
            f"PostgreSQL unavailable for more than {bound_s:g}s (AEGIS_STORE_OUTAGE_S): {last}"
        ) from last
    return result


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
