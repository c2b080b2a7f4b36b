"""Bearer-token authentication for the REST API (Ray Serve's ports do not check Ray's token)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import HTTPException, Request

CACHE_TTL_S = 10.0


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    role: str


class TokenCache:
    """Remembers verified tokens briefly so that every request does not cost a query."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, Caller]] = {}

    def get(self, secret: str) -> Caller | None:
        hit = self._seen.get(secret)
        if hit and time.monotonic() - hit[0] < CACHE_TTL_S:
            return hit[1]
        return None

    def put(self, secret: str, caller: Caller) -> None:
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[secret] = (time.monotonic(), caller)


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise HTTPException(
            status_code=401,
            detail={"error": "unauthenticated", "message": "missing bearer token"},
            headers={"WWW-Authenticate": "Bearer"},
        )
    return secret.strip()
