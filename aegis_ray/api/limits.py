"""What keeps one caller from taking the API from everybody else.

- `StreamLimits`: open watch/follow streams per token, per tenant and in all (below the
  replica's request slots, so unary calls always find one), and each stream's lifetime.
- `RateLimit`: submissions per token (a token bucket).
- The body limit runs in Serve's HTTP proxy instead (api/proxy_limits.py).

A refusal is `ApiProblem("rate_limited", ..., retry_after_s=N)`: 429 with `Retry-After` over
REST, RESOURCE_EXHAUSTED over gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aegis_ray.api.errors import ApiProblem


@dataclass(frozen=True)
class Limits:
    """The API's limits (ControlPlaneConfig.limits; `aegis up` reads them from Settings)."""

    # A join token lives at most this long; other tokens at most token_max_ttl_s.
    join_token_max_ttl_s: float = 900.0
    token_max_ttl_s: float = 365 * 86400.0
    streams_per_token: int = 16
    streams_per_tenant: int = 64
    # All streams of the replica: below its max_ongoing_requests (deployment.py), so that
    # unary calls (and /health) always find a request slot.
    streams_total: int = 150
    # A stream ends after this long; clients resume with their after_* cursors.
    stream_max_s: float = 3600.0
    # Submissions per token: a burst of `submit_burst`, refilled at `submit_per_s`.
    submit_per_s: float = 5.0
    submit_burst: int = 20

    def __post_init__(self) -> None:
        for name in ("streams_per_token", "streams_per_tenant", "streams_total", "submit_burst"):
            if getattr(self, name) < 1:
                raise ValueError(f"api limit {name} must be >= 1, got {getattr(self, name)}")
        for name in ("stream_max_s", "submit_per_s", "join_token_max_ttl_s", "token_max_ttl_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"api limit {name} must be > 0, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, values: dict[str, float]) -> Limits:
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown api limits: {', '.join(unknown)}")
        return cls(**values)  # type: ignore[arg-type]


def too_many(what: str, retry_after_s: float) -> ApiProblem:
    seconds = max(1, math.ceil(retry_after_s))
    return ApiProblem("rate_limited", f"{what}; retry after {seconds}s", retry_after_s=seconds)


@dataclass
class StreamLimits:
    limits: Limits
    per_key: dict[str, int] = field(default_factory=dict)

    def _over(self, token_key: str, tenant: str) -> str | None:
        lim = self.limits
        if self.per_key.get("*", 0) >= lim.streams_total:
            return f"this API replica serves {lim.streams_total} streams already"
        if self.per_key.get("tenant:" + tenant, 0) >= lim.streams_per_tenant:
            return f"tenant {tenant!r} has {lim.streams_per_tenant} streams open already"
        if self.per_key.get("token:" + token_key, 0) >= lim.streams_per_token:
            return f"this token has {lim.streams_per_token} streams open already"
        return None

    def _take(self, token_key: str, tenant: str) -> tuple[str, ...]:
        why = self._over(token_key, tenant)
        if why is not None:
            raise too_many(why, 5)
        keys = ("*", "tenant:" + tenant, "token:" + token_key)
        for k in keys:
            self.per_key[k] = self.per_key.get(k, 0) + 1
        return keys

    def _give_back(self, keys: tuple[str, ...]) -> None:
        for k in keys:
            left = self.per_key[k] - 1
            if left:
                self.per_key[k] = left
            else:
                del self.per_key[k]

    def bounded(
        self, items: AsyncIterator[dict[str, Any]], token_key: str, tenant: str
    ) -> AsyncIterator[dict[str, Any]]:
        """`items`, holding a stream slot from now (a refusal comes before the first item)
        until they end, the client goes, or the stream's lifetime is over: then it just ends,
        and the client resumes after the last item it got. A stream dropped before its first
        item gives its slot back too."""
        keys = self._take(token_key, tenant)
        return _Bounded(items, lambda: self._give_back(keys), self.limits.stream_max_s)


class _Bounded:
    """An async iterator over `items` that ends at its deadline and calls `release` exactly
    once: when it ends, fails, is closed, or is dropped unstarted."""

    def __init__(
        self, items: AsyncIterator[dict[str, Any]], release: Callable[[], None], max_s: float
    ) -> None:
        self._items = items
        self._release: Callable[[], None] | None = release
        self._deadline = time.monotonic() + max_s

    def __aiter__(self) -> _Bounded:
        return self

    async def __anext__(self) -> dict[str, Any]:
        left = self._deadline - time.monotonic()
        if self._release is None or left <= 0:
            await self.aclose()
            raise StopAsyncIteration
        try:
            return await asyncio.wait_for(anext(self._items), left)
        except (StopAsyncIteration, TimeoutError):
            await self.aclose()
            raise StopAsyncIteration from None
        except BaseException:
            await self.aclose()
            raise

    def _done(self) -> bool:
        release, self._release = self._release, None
        if release is not None:
            release()
            return True
        return False

    async def aclose(self) -> None:
        if self._done():
            closer = getattr(self._items, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()

    def __del__(self) -> None:
        self._done()


class RateLimit:
    """A token bucket per key: `burst` at once, refilled at `per_s`."""

    def __init__(self, per_s: float, burst: int, clock: Any = time.monotonic) -> None:
        self.per_s, self.burst, self.clock = per_s, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, what: str) -> None:
        now = self.clock()
        level, since = self._buckets.get(key, (float(self.burst), now))
        level = min(float(self.burst), level + (now - since) * self.per_s)
        if level < 1:
            self._buckets[key] = (level, now)
            raise too_many(what, (1 - level) / self.per_s)
        self._buckets[key] = (level - 1, now)
        if len(self._buckets) > 10_000:  # forget the full ones: they start full anyway
            full = [k for k, (lv, _) in self._buckets.items() if lv >= self.burst - 1]
            for k in full:
                self._buckets.pop(k, None)
