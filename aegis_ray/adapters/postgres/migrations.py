"""Schema migrations: numbered SQL files (``migrations/NNNN_name.sql``) applied in order, once."""

from __future__ import annotations

import re
from importlib.resources import files

import asyncpg

# Arbitrary but fixed: every orchestrator takes the same lock, so only one migrates at a time.
LOCK_KEY = 0x41454749530001
_FILE = re.compile(r"^(\d+)_(\w+)\.sql$")


def available() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, by version."""
    found = []
    for entry in files("aegis_ray.adapters.postgres").joinpath("migrations").iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the missing migrations, each in its own transaction; returns the versions applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in available():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied.append(version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
