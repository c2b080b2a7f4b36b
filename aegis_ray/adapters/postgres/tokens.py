"""API tokens: only the sha256 of a secret is stored, so a database leak reveals no secret."""

from __future__ import annotations

import hashlib
import secrets
import uuid

import asyncpg

from aegis_ray.adapters.postgres.records import TokenRecord

ROLES = ("admin", "user", "join")
PREFIX = "aegis_"
_COLUMNS = "id, tenant_id, role, description, created_at, expires_at, revoked_at"


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _check(tenant_id: str, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"token role {role!r} is not one of {', '.join(ROLES)}")
    if not tenant_id:
        raise ValueError("token tenant_id must not be empty")


class TokenStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self, *, tenant_id: str, role: str, description: str = "", ttl_s: float | None = None
    ) -> str:
        """Issue a token; returns the plaintext secret, which is shown once and never stored."""
        _check(tenant_id, role)
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"token ttl_s must be > 0, got {ttl_s}")
        secret = new_secret()
        await self.pool.execute(
            "INSERT INTO api_tokens (id, token_hash, tenant_id, role, description, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::float8))",
            uuid.uuid4(), token_hash(secret), tenant_id, role, description, ttl_s,
        )  # fmt: skip
        return secret

    async def verify(self, secret: str) -> TokenRecord | None:
        """The token's record if it is known, not revoked and not expired; otherwise None."""
        if not secret:
            return None
        # Lookup by hash: timing reveals nothing about the secret itself.
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > now())",
            token_hash(secret),
        )
        return TokenRecord.from_row(row) if row else None

    async def revoke(self, token_id: uuid.UUID | str) -> bool:
        """Revoke a token by id; False if unknown or already revoked."""
        try:
            tid = uuid.UUID(str(token_id))
        except ValueError:
            raise ValueError(f"token id {token_id!r} is not a UUID") from None
        status = await self.pool.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", tid
        )
        return bool(status == "UPDATE 1")

    async def ensure_admin(self, secret: str, tenant_id: str = "default") -> TokenRecord:
        """Register ``secret`` as an admin token unless it is known already (idempotent).

        A token that was revoked stays revoked: replace the secret to get a working one.
        """
        return await self.ensure(
            secret, role="admin", description="admin token of aegis up", tenant_id=tenant_id
        )

    async def ensure(
        self, secret: str, *, role: str, description: str, tenant_id: str = "default"
    ) -> TokenRecord:
        """Register a pre-shared ``secret`` with this role and no expiry, unless it is known
        already (idempotent); raises ValueError if it is known with another role."""
        _check(tenant_id, role)
        if len(secret) < 16:
            raise ValueError(f"{role} secret is too short (at least 16 characters)")
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO api_tokens (id, token_hash, tenant_id, role, description)"
                " VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (token_hash) DO NOTHING",
                uuid.uuid4(),
                token_hash(secret),
                tenant_id,
                role,
                description,
            )
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = $1", token_hash(secret)
            )
        record = TokenRecord.from_row(row)
        if record.role != role:
            raise ValueError(f"this secret is already registered as a {record.role} token")
        return record
