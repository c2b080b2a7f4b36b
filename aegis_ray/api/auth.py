"""Bearer-token authentication for both APIs (Ray Serve's ports do not check Ray's token)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

# A revocation reaches every process's cache through PostgreSQL's notification at once; this
# bounds how long a cached token is trusted if a notification were lost all the same.
CACHE_TTL_S = 10.0


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    role: str
    # The token's id (limits count per token) and, for join tokens and node credentials, the
    # node it is bound to.
    token_id: str = ""
    node_id: str | None = None


class TokenCache:
    """Remembers verified tokens briefly so that every request does not cost a query."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, Caller]] = {}

    def get(self, secret: str) -> Caller | None:
        hit = self._seen.get(secret)
        if hit and time.monotonic() - hit[0] < CACHE_TTL_S:
            return hit[1]
        return None

    def clear(self) -> None:
        """Forget every token (a token changed somewhere: PostgreSQL notified it)."""
        self._seen.clear()

    def put(self, secret: str, caller: Caller) -> None:
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[secret] = (time.monotonic(), caller)


def bearer_secret(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header or gRPC metadata value."""
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def metadata_secret(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The bearer token in gRPC invocation metadata (key `authorization`)."""
    for key, value in metadata:
        if key.lower() == "authorization":
            return bearer_secret(value.decode() if isinstance(value, bytes) else value)
    return None
