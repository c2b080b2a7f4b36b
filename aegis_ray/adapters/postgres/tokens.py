"""API tokens: only the sha256 of a secret is stored, so a database leak reveals no secret.

Roles: `admin` and `user` call the API; `join` lets one node (the node id and type it was
issued for) register once; `node` is a node's own credential, handed out when it registers,
which its heartbeats and re-registrations need. A `join` token without a node id is the
`ray up` pre-shared join secret: it registers node ids of its node types, each once.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from aegis_ray.adapters.postgres.records import TokenRecord

ROLES = ("admin", "user", "join", "node")
PREFIX = "aegis_"
_COLUMNS = (
    "id, tenant_id, role, description, created_at, expires_at, revoked_at,"
    " node_id, node_type, node_types, redeemed_at"
)
# Whoever can read the table sees no secret, but the hash stays a lookup key only.
_LIVE = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
TOKEN_CHANNEL = "aegis_tokens"


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _check(tenant_id: str, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"token role {role!r} is not one of {', '.join(ROLES)}")
    if not tenant_id:
        raise ValueError("token tenant_id must not be empty")


def secret_admits(node_types: builtins.list[str], node_id: str) -> bool:
    """Whether a join secret for these node types may register `node_id`: the type's name
    itself or `<type>-<anything>` (the cluster configs start edges as `{id}-{host}`)."""
    return any(node_id == t or node_id.startswith(t + "-") for t in node_types)


class JoinRefused(ValueError):
    """A join token that does not admit this node; the message says why (no secret in it)."""


@dataclass(frozen=True)
class Redeemed:
    """A registration's authority: the join token (or node credential) it used."""

    token: TokenRecord
    # The node's new credential (plaintext, shown once) when one was issued.
    credential: str | None


class TokenStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self,
        *,
        tenant_id: str,
        role: str,
        description: str = "",
        ttl_s: float | None = None,
        node_id: str | None = None,
        node_type: str | None = None,
    ) -> str:
        """Issue a token; returns the plaintext secret, which is shown once and never stored.
        A join token needs the node id it is for (and may name the node's type)."""
        _check(tenant_id, role)
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"token ttl_s must be > 0, got {ttl_s}")
        if role == "join" and not node_id:
            raise ValueError("a join token needs the node_id of the node it is for")
        if role not in ("join", "node") and (node_id or node_type):
            raise ValueError(f"a {role} token is bound to no node: leave out node_id/node_type")
        secret = new_secret()
        await self.pool.execute(
            "INSERT INTO api_tokens (id, token_hash, tenant_id, role, description, expires_at,"
            " node_id, node_type)"
            " VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::float8), $7, $8)",
            uuid.uuid4(), token_hash(secret), tenant_id, role, description, ttl_s,
            node_id, node_type,
        )  # fmt: skip
        return secret

    async def verify(self, secret: str) -> TokenRecord | None:
        """The token's record if it is known, not revoked, not expired and (a join token) not
        redeemed yet; otherwise None."""
        if not secret:
            return None
        # Lookup by hash: timing reveals nothing about the secret itself.
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND {_LIVE}"
            " AND redeemed_at IS NULL",
            token_hash(secret),
        )
        return TokenRecord.from_row(row) if row else None

    async def list(
        self, *, tenant_id: str | None = None, include_revoked: bool = False
    ) -> builtins.list[TokenRecord]:
        """Tokens (never their secrets), newest first; a tenant's own only when given."""
        where = ["($1::text IS NULL OR tenant_id = $1)"]
        if not include_revoked:
            where.append(_LIVE)
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, id",
            tenant_id,
        )
        return [TokenRecord.from_row(r) for r in rows]

    async def get(self, token_id: uuid.UUID | str) -> TokenRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE id = $1", _uuid(token_id)
        )
        return TokenRecord.from_row(row) if row else None

    async def revoke(self, token_id: uuid.UUID | str) -> bool:
        """Revoke a token by id; False if unknown or already revoked."""
        status = await self.pool.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
            _uuid(token_id),
        )
        return bool(status == "UPDATE 1")

    async def redeem_join(
        self, conn: Any, secret: str, *, node_id: str, node_type: str
    ) -> TokenRecord:
        """Spend a join token on registering `node_id` (inside the caller's transaction on
        `conn`, so a failed registration spends nothing). One statement each: two nodes racing
        with one single-use token cannot both win. Raises JoinRefused saying why."""
        digest = token_hash(secret)
        row = await conn.fetchrow(
            f"UPDATE api_tokens SET redeemed_at = now() WHERE token_hash = $1 AND role = 'join'"
            f" AND node_id = $2 AND (node_type IS NULL OR node_type = $3) AND {_LIVE}"
            f" AND redeemed_at IS NULL RETURNING {_COLUMNS}",
            digest, node_id, node_type,
        )  # fmt: skip
        if row is not None:
            return TokenRecord.from_row(row)
        found = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND role = 'join'"
            f" AND {_LIVE}",
            digest,
        )
        if found is None:
            raise JoinRefused("invalid, expired or revoked join token")
        token = TokenRecord.from_row(found)
        if token.node_id is None:  # the pre-shared join secret
            types = token.node_types or []
            if not secret_admits(types, node_id):
                raise JoinRefused(
                    f"the cluster join secret admits node ids of the node types"
                    f" {', '.join(types) or '(none)'} (`<type>-...`), not {node_id!r}"
                )
            done = await conn.execute(
                "INSERT INTO join_redemptions (token_id, node_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING",
                token.id, node_id,
            )  # fmt: skip
            if done != "INSERT 0 1":
                raise JoinRefused(
                    f"node {node_id!r} has joined with the cluster join secret before: it"
                    " re-registers with its node credential"
                )
            return token
        if token.redeemed_at is not None:
            raise JoinRefused("this join token has been used already (join tokens are single-use)")
        if token.node_id != node_id:
            raise JoinRefused(f"this join token is for node {token.node_id!r}, not {node_id!r}")
        raise JoinRefused(
            f"this join token is for a {token.node_type} node, not a {node_type} node"
        )

    async def issue_node_credential(self, conn: Any, *, node_id: str, tenant_id: str) -> str:
        """A node's new credential; its earlier ones stop working (same transaction)."""
        await conn.execute(
            "UPDATE api_tokens SET revoked_at = now()"
            " WHERE role = 'node' AND node_id = $1 AND revoked_at IS NULL",
            node_id,
        )
        secret = new_secret()
        await conn.execute(
            "INSERT INTO api_tokens (id, token_hash, tenant_id, role, description, node_id)"
            " VALUES ($1, $2, $3, 'node', $4, $5)",
            uuid.uuid4(), token_hash(secret), tenant_id, f"credential of node {node_id}", node_id,
        )  # fmt: skip
        return secret

    async def has_node_credential(self, conn: Any, node_id: str) -> bool:
        return bool(
            await conn.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM api_tokens WHERE role = 'node' AND node_id = $1"
                f" AND {_LIVE})",
                node_id,
            )
        )

    async def ensure_admin(self, secret: str, tenant_id: str = "default") -> TokenRecord:
        """Register ``secret`` as an admin token unless it is known already (idempotent).

        A token that was revoked stays revoked: replace the secret to get a working one.
        """
        return await self.ensure(
            secret, role="admin", description="admin token of aegis up", tenant_id=tenant_id
        )

    async def ensure(
        self,
        secret: str,
        *,
        role: str,
        description: str,
        tenant_id: str = "default",
        node_types: builtins.list[str] | None = None,
    ) -> TokenRecord:
        """Register a pre-shared ``secret`` with this role and no expiry, unless it is known
        already (idempotent); raises ValueError if it is known with another role.
        `node_types`: a join secret's node types (set again on every call)."""
        _check(tenant_id, role)
        if len(secret) < 16:
            raise ValueError(f"{role} secret is too short (at least 16 characters)")
        if role == "join" and not node_types:
            raise ValueError("a join secret needs the node types whose nodes it admits")
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO api_tokens (id, token_hash, tenant_id, role, description, node_types)"
                " VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (token_hash) DO UPDATE SET node_types = EXCLUDED.node_types"
                " WHERE api_tokens.role = 'join' AND api_tokens.node_id IS NULL",
                uuid.uuid4(), token_hash(secret), tenant_id, role, description, node_types,
            )  # fmt: skip
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = $1", token_hash(secret)
            )
        record = TokenRecord.from_row(row)
        if record.role != role:
            raise ValueError(f"this secret is already registered as a {record.role} token")
        return record

    async def rotate_admin(self, tenant_id: str = "default") -> tuple[str, TokenRecord]:
        """A new admin token; every other admin token of the tenant is revoked (one
        transaction). Returns the new secret and its record."""
        secret = new_secret()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE api_tokens SET revoked_at = now()"
                " WHERE role = 'admin' AND tenant_id = $1 AND revoked_at IS NULL",
                tenant_id,
            )
            row = await conn.fetchrow(
                "INSERT INTO api_tokens (id, token_hash, tenant_id, role, description)"
                f" VALUES ($1, $2, $3, 'admin', 'admin token (rotated)') RETURNING {_COLUMNS}",
                uuid.uuid4(), token_hash(secret), tenant_id,
            )  # fmt: skip
        return secret, TokenRecord.from_row(row)

    async def rotate_join_secret(
        self, secret: str, *, node_types: builtins.list[str] | None, tenant_id: str = "default"
    ) -> TokenRecord:
        """Replace the cluster join secret: `secret` admits the node types given (else those of
        the secrets it replaces), and every earlier join secret is revoked (one transaction)."""
        if len(secret) < 16:
            raise ValueError("join secret is too short (at least 16 characters)")
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetch(
                "UPDATE api_tokens SET revoked_at = now() WHERE role = 'join'"
                " AND node_id IS NULL AND revoked_at IS NULL AND token_hash <> $1"
                " RETURNING node_types",
                token_hash(secret),
            )
            types = node_types or sorted({t for r in old for t in (r["node_types"] or [])})
            if not types:
                raise ValueError(
                    "no node types for the join secret: name them (there is no earlier secret"
                    " to take them from)"
                )
            row = await conn.fetchrow(
                "INSERT INTO api_tokens (id, token_hash, tenant_id, role, description, node_types)"
                " VALUES ($1, $2, $3, 'join', 'cluster join secret (rotated)', $4)"
                " ON CONFLICT (token_hash) DO UPDATE SET node_types = EXCLUDED.node_types"
                f" WHERE api_tokens.role = 'join' AND api_tokens.node_id IS NULL"
                f" RETURNING {_COLUMNS}",
                uuid.uuid4(), token_hash(secret), tenant_id, types,
            )  # fmt: skip
        if row is None:
            raise ValueError("this secret is already registered as another kind of token")
        return TokenRecord.from_row(row)


def _uuid(token_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return uuid.UUID(str(token_id))
    except ValueError:
        raise ValueError(f"token id {token_id!r} is not a UUID") from None
