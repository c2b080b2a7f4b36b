"""A node agent's follow answer is bounded in bytes as well as in lines."""

from __future__ import annotations

import asyncio

from aegis_ray.adapters.docker.container import LogLine
from aegis_ray.adapters.docker.runtime import Managed
from aegis_ray.node_agent.agent import _Supervised


def _supervised(loop: asyncio.AbstractEventLoop) -> _Supervised:
    managed = Managed(
        container_id="c" * 64,
        execution_id="e",
        attempt=1,
        running=True,
        started_at=None,
        timeout_s=None,
        placement_group_id="",
    )
    return _Supervised(managed=managed, changed=asyncio.Event(), loop=loop)


def test_a_batch_stops_at_its_byte_bound_but_always_carries_a_line() -> None:
    loop = asyncio.new_event_loop()
    try:
        sup = _supervised(loop)
        sup.push([LogLine(i, 0.0, "stdout", "x" * 400) for i in range(10)])
        lines, last = sup.take(1000, max_bytes=1000)
        assert [ln.seq for ln in lines] == [0, 1] and not last
        lines, _ = sup.take(1000, max_bytes=10)  # one line larger than the bound still goes
        assert [ln.seq for ln in lines] == [0]
        sup.ack(8)
        sup.finish(None, gone="removed")
        lines, last = sup.take(1000, max_bytes=1000)
        assert [ln.seq for ln in lines] == [9] and last
    finally:
        loop.close()
