"""Followers ride out blips (issue 11, item 4): a watch or the cluster feed cut without its end
is opened again from its cursor, with backoff, for a bounded time; a refusal is not retried;
`wait` keeps polling through an outage. Over a scripted transport, without a server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from aegis_ray.contract.executions import End, Event, LogLine
from aegis_ray.sdk import client as client_module
from aegis_ray.sdk.client import AsyncClient, Client, Outage
from aegis_ray.sdk.errors import ApiError, ApiUnreachable, NotFound
from aegis_ray.sdk.transport import Op
from tests.unit.test_sdk import EXECUTION, Replies

TS = EXECUTION["created_at"]
EVENT = {"id": 7, "execution_id": "x", "ts": TS, "attempt": 1, "kind": "state",
         "from_state": "STARTING", "to_state": "RUNNING", "message": "",
         "node_id": "n"}  # fmt: skip
LOG = {"id": 40, "execution_id": "x", "attempt": 1, "ts": TS, "stream": "stdout", "line": "hi"}
END = {"end": {"state": "SUCCEEDED"}}
CUT = ApiUnreachable("peer closed connection without sending complete message body")
UNAVAILABLE = ApiError.of(503, {"error": "database_unavailable", "message": "PostgreSQL down"})


class Streams(Replies):
    """Each stream is a script of items, where an exception cuts the stream there."""

    def stream(self, op: Op, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.sent.append((op, dict(args)))
        for item in self.replies.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "BACKOFF_S", (0.001, 0.01))
    monkeypatch.setattr(client_module, "WAIT_POLL_S", 0.001)


def test_a_cut_watch_resumes_from_its_cursors_until_the_end() -> None:
    t = Streams(
        [{"event": EVENT}, {"log": LOG}, CUT],  # cut: connection lost
        [UNAVAILABLE],  # the API answers, but PostgreSQL is restarting
        [{"log": LOG | {"id": 41, "line": "again"}}],  # closed without an end row
        [END],
    )
    items = list(Client(t).watch("x"))
    assert [type(i) for i in items] == [Event, LogLine, LogLine, End]
    assert [(a["after_event"], a["after_log"]) for _, a in t.sent] == [
        (0, 0), (7, 40), (7, 40), (7, 41),
    ]  # fmt: skip


def test_a_stream_closed_without_an_end_is_never_an_end() -> None:
    t = Streams([{"event": EVENT}], [END])
    items = list(Client(t).watch("x", logs=False))
    assert isinstance(items[-1], End) and len(t.sent) == 2
    assert t.sent[1][1]["logs"] is False  # the same request, from the cursor


def test_the_cluster_feed_resumes_after_its_last_event() -> None:
    row = {"id": 12, "ts": TS, "kind": "node", "tenant_id": None, "node_id": "n",
           "execution_id": None, "name": None, "from_state": "ready", "to_state": "down",
           "message": "down"}  # fmt: skip
    t = Streams([{"event": row}, CUT], [{"event": row | {"id": 13}}])
    feed = Client(t).watch_cluster(after=3)
    assert [next(feed).id, next(feed).id] == [12, 13]
    assert [a["after"] for _, a in t.sent] == [3, 12]


def test_an_outage_longer_than_the_bound_gives_up_with_api_unreachable() -> None:
    t = Streams(*[[CUT]] * 10_000)
    with pytest.raises(ApiUnreachable, match="lost the aegis API for over 0.2s"):
        list(Client(t, outage_s=0.2).watch("x"))
    assert len(t.sent) > 2  # it did try again before giving up


def test_progress_resets_the_bound() -> None:
    outage = Outage(0.05)
    outage.delay("cut")
    outage.reset()
    assert outage.since is None and outage.tries == 0


def test_a_refusal_is_not_tried_again() -> None:
    t = Streams([ApiError.of(404, {"error": "not_found", "message": "no execution"})])
    with pytest.raises(NotFound):
        list(Client(t).watch("x"))
    assert len(t.sent) == 1


def test_wait_keeps_polling_through_an_outage() -> None:
    done = EXECUTION | {"state": "SUCCEEDED", "exit_code": 0}
    t = Replies(EXECUTION, CUT, UNAVAILABLE, CUT, done)
    assert Client(t).wait("x").exit_code == 0
    with pytest.raises(ApiUnreachable):
        Client(Replies(*[CUT] * 10_000), outage_s=0.1).wait("x")


class AsyncStreams:
    target = "test"

    def __init__(self, *scripts: list[Any]) -> None:
        self.scripts = list(scripts)
        self.sent: list[dict[str, Any]] = []

    async def stream(self, op: Op, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.sent.append(dict(args))
        for item in self.scripts.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item


def test_the_async_watch_resumes_the_same_way() -> None:
    t = AsyncStreams([{"log": LOG}, CUT], [], [END])

    async def main() -> list[Any]:
        return [item async for item in AsyncClient(t).watch("x")]

    items = asyncio.run(main())
    assert [type(i) for i in items] == [LogLine, End]
    assert [a["after_log"] for a in t.sent] == [0, 40, 40]


def test_submit_is_sent_again_with_the_same_key_when_nothing_answered() -> None:
    t = Replies(CUT, CUT, EXECUTION)
    assert Client(t).submit("kind: Agent\n").id == EXECUTION["id"]
    keys = [args["idempotency_key"] for _, args in t.sent]
    assert len(keys) == 3 and len(set(keys)) == 1
    given = Replies(EXECUTION)
    Client(given).submit("kind: Agent\n", idempotency_key="nightly-1")
    assert given.sent[0][1]["idempotency_key"] == "nightly-1"


def test_submit_gives_up_after_its_tries_and_a_refusal_is_not_sent_again() -> None:
    t = Replies(CUT, CUT, CUT, EXECUTION)
    with pytest.raises(ApiUnreachable):
        Client(t).submit("kind: Agent\n")
    assert len(t.sent) == 3
    refused = Replies(UNAVAILABLE, EXECUTION)
    with pytest.raises(ApiError):
        Client(refused).submit("kind: Agent\n")
    assert len(refused.sent) == 1
