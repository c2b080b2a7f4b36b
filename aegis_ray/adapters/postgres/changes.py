"""Wake watchers when an execution gets new events or log lines, or the cluster feed a new
event, and drop cached tokens when a token changes (PostgreSQL LISTEN/NOTIFY).

One listening connection per process, opened on first use, fans notifications out to the
waiters of each execution (migration 0002's triggers send them) and of the cluster feed
(migration 0010's). A waiter also wakes after its timeout, so a notification lost to a
reconnect costs at most that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)
CHANNEL = "aegis_execution"
CLUSTER_CHANNEL = "aegis_cluster"
# Migration 0012: any change of a token row (a revocation) notifies this channel.
TOKEN_CHANNEL = "aegis_tokens"
# The waiters' key of the cluster feed (never an execution id).
CLUSTER = "*cluster"


class ChangeFeed:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._token_callbacks: list[Callable[[], None]] = []

    async def watch_tokens(self, callback: Callable[[], None]) -> bool:
        """Call `callback` whenever a token row changes, and when the listening connection is
        lost (a change may have been missed). Registers it once; returns whether this process
        listens now: if not, the caller must not trust anything it cached."""
        if callback not in self._token_callbacks:
            self._token_callbacks.append(callback)
        return await self._listening()

    def subscribe(self, execution_id: uuid.UUID | str) -> Subscription:
        """Changes of one execution from now on; close it when done (or use `with`)."""
        return Subscription(self, str(execution_id))

    def subscribe_cluster(self) -> Subscription:
        """New events of the cluster feed from now on."""
        return Subscription(self, CLUSTER)

    def _add(self, key: str, event: asyncio.Event) -> None:
        self._waiters.setdefault(key, set()).add(event)

    def _discard(self, key: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(key, None)

    async def _listening(self) -> bool:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return True
            try:
                conn = await self.pool.acquire()
                await conn.add_listener(CHANNEL, self._on_notify)
                await conn.add_listener(CLUSTER_CHANNEL, self._on_notify)
                await conn.add_listener(TOKEN_CHANNEL, self._on_notify)
                conn.add_termination_listener(self._on_lost)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("cannot listen for execution changes: %s", err)
                return False
            self._conn = conn
            return True

    def _on_notify(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        if channel == TOKEN_CHANNEL:
            for callback in self._token_callbacks:
                callback()
            return
        key = CLUSTER if channel == CLUSTER_CHANNEL else payload
        for event in self._waiters.get(key, ()):
            event.set()

    def _on_lost(self, conn: Any) -> None:
        # The next wait listens again; everybody waiting now re-reads what they missed.
        self._conn = None
        asyncio.ensure_future(self.pool.release(conn))
        for callback in self._token_callbacks:
            callback()
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()


class Subscription:
    """Set by every change of its execution since it was made: a change that comes between a
    watcher's read and its wait is not lost, the next wait returns at once."""

    def __init__(self, feed: ChangeFeed, key: str) -> None:
        self._feed, self._key = feed, key
        self._event = asyncio.Event()
        feed._add(key, self._event)

    async def wait(self, timeout: float) -> bool:
        """Until a change (True; consumed) or `timeout` (False)."""
        if not await self._feed._listening():
            await asyncio.sleep(timeout)  # no listener: fall back to the timeout
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        changed = self._event.is_set()
        self._event.clear()
        return changed

    def close(self) -> None:
        self._feed._discard(self._key, self._event)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# Pools live as long as their process (one per replica or worker), and cannot be weakly referenced.
_feeds: dict[int, ChangeFeed] = {}


def feed_for(pool: asyncpg.Pool) -> ChangeFeed:
    """The process's one feed for this pool (one listening connection, however many stores)."""
    feed = _feeds.get(id(pool))
    if feed is None or feed.pool is not pool:
        feed = _feeds[id(pool)] = ChangeFeed(pool)
    return feed
