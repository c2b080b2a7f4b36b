"""Registered nodes (the registry the reconciler compares with Ray's live node table)."""

from __future__ import annotations

import builtins
from typing import Any

import asyncpg

from aegis_ray.adapters.postgres.records import NodeRecord
from aegis_ray.core.models.node import NodeStatus

FIELDS = (
    "type", "region", "tags", "resources", "ray_node_id", "address", "version", "status", "labels",
)  # fmt: skip
_COLUMNS = "id, " + ", ".join(FIELDS) + ", registered_at, last_heartbeat"


class NodeStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def upsert(self, node: dict[str, Any], *, conn: Any = None) -> NodeRecord:
        """Register a node or update the fields given; counts as a heartbeat. `conn`: within
        that connection's transaction."""
        node_id = node.get("id")
        if not node_id or not isinstance(node_id, str):
            raise ValueError(f"node id must be a non-empty string, got {node_id!r}")
        unknown = sorted(set(node) - {"id", *FIELDS})
        if unknown:
            raise ValueError(f"unknown node fields: {', '.join(unknown)}")
        cols = [c for c in FIELDS if c in node]
        params = ", ".join(f"${i}" for i in range(2, len(cols) + 2))
        updates = "".join(f", {c} = EXCLUDED.{c}" for c in cols)
        row = await (conn or self.pool).fetchrow(
            f"INSERT INTO nodes (id, last_heartbeat{''.join(', ' + c for c in cols)})"
            f" VALUES ($1, now(){', ' + params if cols else ''})"
            f" ON CONFLICT (id) DO UPDATE SET last_heartbeat = now(){updates}"
            f" RETURNING {_COLUMNS}",
            node_id,
            *(node[c] for c in cols),
        )
        return NodeRecord.from_row(row)

    async def get(self, node_id: str, *, conn: Any = None) -> NodeRecord | None:
        row = await (conn or self.pool).fetchrow(
            f"SELECT {_COLUMNS} FROM nodes WHERE id = $1", node_id
        )
        return NodeRecord.from_row(row) if row else None

    async def list(self) -> builtins.list[NodeRecord]:
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM nodes ORDER BY id")
        return [NodeRecord.from_row(r) for r in rows]

    async def set_status(self, node_id: str, status: NodeStatus) -> bool:
        done = await self.pool.execute(
            "UPDATE nodes SET status = $2 WHERE id = $1", node_id, NodeStatus(status).value
        )
        return bool(done == "UPDATE 1")

    async def heartbeat(self, node_id: str) -> bool:
        done = await self.pool.execute(
            "UPDATE nodes SET last_heartbeat = now() WHERE id = $1", node_id
        )
        return bool(done == "UPDATE 1")
