"""The cluster feed: node status changes and (copied by migration 0010's trigger) execution
state changes, in one id order. Followers are woken by the `aegis_cluster` notification."""

from __future__ import annotations

import builtins

import asyncpg

from aegis_ray.adapters.postgres.changes import Subscription, feed_for
from aegis_ray.adapters.postgres.records import ClusterEventRecord
from aegis_ray.core.registry import status_change

_COLUMNS = (
    "id, ts, kind, tenant_id, node_id, execution_id, name, from_state, to_state, message"
)

# Sets the node's observed status only if it changed, and says from what (the row is locked,
# so two orchestrators seeing the same change record it once).
_OBSERVE = """
UPDATE nodes n SET observed_status = $2
FROM (SELECT id, observed_status AS before FROM nodes WHERE id = $1 FOR UPDATE) o
WHERE n.id = o.id AND o.before IS DISTINCT FROM $2
RETURNING o.before
"""


class ClusterEventStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def last_id(self) -> int:
        """The id of the newest event (0 if none): where a follower from now on starts."""
        return int(await self.pool.fetchval("SELECT COALESCE(max(id), 0) FROM cluster_events"))

    async def list(
        self, *, tenant_id: str | None, after: int | None = None, limit: int = 100
    ) -> builtins.list[ClusterEventRecord]:
        """Events after the id `after` in order, or (`after` None) the latest `limit` ones.

        `tenant_id` None: every event (admins); else that tenant's executions only."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        scope = "($1::text IS NULL OR tenant_id = $1)"
        if after is None:
            rows = await self.pool.fetch(
                f"SELECT * FROM (SELECT {_COLUMNS} FROM cluster_events WHERE {scope}"
                " ORDER BY id DESC LIMIT $2) latest ORDER BY id",
                tenant_id,
                limit,
            )
        else:
            rows = await self.pool.fetch(
                f"SELECT {_COLUMNS} FROM cluster_events WHERE {scope} AND id > $2"
                " ORDER BY id LIMIT $3",
                tenant_id,
                after,
                limit,
            )
        return [ClusterEventRecord.from_row(r) for r in rows]

    async def node_observed(self, node_id: str, status: str) -> bool:
        """Record a node's status if it changed since it was last observed; True if it did."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_OBSERVE, node_id, status)
            if row is None:
                return False
            await conn.execute(
                "INSERT INTO cluster_events (kind, node_id, from_state, to_state, message)"
                " VALUES ('node', $1, $2, $3, $4)",
                node_id,
                row["before"],
                status,
                status_change(row["before"], status),
            )
        return True

    def subscribe(self) -> Subscription:
        """Wake-ups for new events of the feed."""
        return feed_for(self.pool).subscribe_cluster()
