"""The API's limits as pure logic: stream slots per token/tenant/total and their lifetime, the
submit rate limit, the proxy's body limit, and which node ids a join secret admits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aegis_ray.adapters.postgres.tokens import secret_admits
from aegis_ray.api.errors import ApiProblem
from aegis_ray.api.limits import Limits, RateLimit, StreamLimits
from aegis_ray.api.proxy_limits import BodyLimit


async def _forever(stop: asyncio.Event) -> AsyncIterator[dict[str, Any]]:
    n = 0
    while not stop.is_set():
        n += 1
        yield {"n": n}
        await asyncio.sleep(0.01)


def test_streams_past_a_tokens_limit_are_refused_with_retry_after_until_one_closes() -> None:
    async def main() -> None:
        limits = StreamLimits(Limits(streams_per_token=2, streams_per_tenant=3, streams_total=4))
        stop = asyncio.Event()
        a1 = limits.bounded(_forever(stop), "tok-a", "t1")
        a2 = limits.bounded(_forever(stop), "tok-a", "t1")
        with pytest.raises(ApiProblem) as refused:
            limits.bounded(_forever(stop), "tok-a", "t1")
        assert refused.value.error == "rate_limited" and refused.value.http_status == 429
        assert refused.value.extra["retry_after_s"] >= 1
        assert "this token" in refused.value.message
        # Another token of the same tenant: one more, then the tenant's limit.
        b1 = limits.bounded(_forever(stop), "tok-b", "t1")
        with pytest.raises(ApiProblem, match="tenant 't1'"):
            limits.bounded(_forever(stop), "tok-b", "t1")
        # Another tenant: the replica's total is 4.
        c1 = limits.bounded(_forever(stop), "tok-c", "t2")
        with pytest.raises(ApiProblem, match="serves 4 streams"):
            limits.bounded(_forever(stop), "tok-c", "t2")
        assert (await anext(a1))["n"] == 1
        await a1.aclose()  # the client went away: its slot is free again
        a3 = limits.bounded(_forever(stop), "tok-a", "t1")
        for s in (a2, a3, b1, c1):
            await s.aclose()
        assert limits.per_key == {}

    asyncio.run(main())


def test_a_stream_dropped_before_its_first_item_gives_its_slot_back() -> None:
    async def main() -> None:
        limits = StreamLimits(Limits(streams_per_token=1))
        stop = asyncio.Event()
        limits.bounded(_forever(stop), "tok", "t")  # a response never sent: dropped at once
        assert limits.per_key == {}
        kept = limits.bounded(_forever(stop), "tok", "t")
        assert limits.per_key["token:tok"] == 1
        await kept.aclose()
        await kept.aclose()  # twice: given back once
        assert limits.per_key == {}

    asyncio.run(main())


def test_a_stream_ends_by_itself_when_its_lifetime_is_over() -> None:
    async def main() -> None:
        limits = StreamLimits(Limits(stream_max_s=0.3))
        stop = asyncio.Event()
        got = [item async for item in limits.bounded(_forever(stop), "tok", "t")]
        assert 5 <= len(got) <= 40, len(got)  # it ended, after yielding for a while
        assert limits.per_key == {}

    asyncio.run(main())


def test_submissions_per_token_are_a_token_bucket() -> None:
    now = [0.0]
    rate = RateLimit(per_s=2.0, burst=3, clock=lambda: now[0])
    for _ in range(3):
        rate.take("a", "too many")
    with pytest.raises(ApiProblem) as refused:
        rate.take("a", "too many")
    assert refused.value.http_status == 429 and refused.value.extra["retry_after_s"] == 1
    rate.take("b", "too many")  # another token is not affected
    now[0] += 0.5  # one more after 1 / per_s
    rate.take("a", "too many")
    with pytest.raises(ApiProblem):
        rate.take("a", "too many")


class _App:
    def __init__(self) -> None:
        self.called = False
        self.body = b""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        while True:
            m = await receive()
            self.body += m.get("body", b"")
            if not m.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _run(
    limit: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[_App, list[Any], int]:
    app = _App()
    sent: list[Any] = []
    read = [0]

    async def receive() -> Any:
        i = read[0]
        read[0] += 1
        if i >= len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[i], "more_body": i < len(chunks) - 1}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": headers}
    asyncio.run(BodyLimit(app, limit)(scope, receive, send))
    return app, sent, read[0]


def test_the_proxy_refuses_a_long_content_length_without_reading_a_byte() -> None:
    app, sent, read = _run(1024, [(b"content-length", str(64 << 20).encode())], [b"x" * 1024])
    assert not app.called and read == 0
    assert sent[0]["status"] == 413 and b"too_large" in sent[1]["body"]


def test_the_proxy_reads_a_chunked_body_only_up_to_the_limit() -> None:
    chunks = [b"x" * 512] * 1000  # 512 KB announced by no Content-Length
    app, sent, read = _run(2048, [], chunks)
    assert not app.called and read == 5  # 5 * 512 > 2048: refused on the fifth chunk
    assert sent[0]["status"] == 413
    app, sent, _ = _run(2048, [], [b"a" * 1000, b"b" * 1000])  # under the limit: passed on
    assert app.called and app.body == b"a" * 1000 + b"b" * 1000 and sent[0]["status"] == 200
    app, sent, _ = _run(2048, [(b"content-length", b"5")], [b"hello"])
    assert app.called and app.body == b"hello"


def test_a_join_secret_admits_node_ids_of_its_node_types_only() -> None:
    types = ["edge-cpu", "edge-gpu"]
    assert secret_admits(types, "edge-cpu-ip-10-0-0-7")
    assert secret_admits(types, "edge-gpu")
    assert not secret_admits(types, "edge-cpux")
    assert not secret_admits(types, "orchestrator")
    assert not secret_admits([], "edge-cpu-1")


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="streams_per_token"):
        Limits(streams_per_token=0)
    with pytest.raises(ValueError, match="stream_max_s"):
        Limits(stream_max_s=0)
