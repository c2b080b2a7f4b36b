"""Ordering events and log lines of one execution into the watch stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from aegis_ray.core.interleave import Interleaver

Row = SimpleNamespace
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def event(i: int, ms: int, to: str | None, attempt: int = 1, kind: str = "state") -> Row:
    return SimpleNamespace(id=i, ts=at(ms), to_state=to, attempt=attempt, kind=kind)


def line(i: int, ms: int, attempt: int = 1) -> SimpleNamespace:
    return SimpleNamespace(id=i, ts=at(ms), attempt=attempt)


def names(items: list[tuple[str, SimpleNamespace]]) -> list[str]:
    return [f"{kind[0]}{row.id}" for kind, row in items]


def test_output_printed_before_the_running_row_was_written_comes_after_it() -> None:
    # The container printed at 100 ms; the RUNNING event was stored at 150 ms.
    order = Interleaver()
    events = [event(1, 0, "PENDING"), event(2, 50, "STARTING"), event(3, 150, "RUNNING")]
    logs = [line(1, 100), line(2, 160)]
    assert names(order.merge(events, logs)) == ["e1", "e2", "e3", "l1", "l2"]


def test_output_stamped_after_the_end_by_a_fast_clock_stays_before_it() -> None:
    # An edge whose clock runs 5 s ahead of the database's.
    order = Interleaver()
    events = [event(1, 0, "RUNNING"), event(2, 1000, "SUCCEEDED")]
    logs = [line(1, 5100), line(2, 5200)]
    assert names(order.merge(events, logs)) == ["e1", "l1", "l2", "e2"]


def test_each_kind_keeps_its_id_order_even_when_times_disagree() -> None:
    order = Interleaver()
    events = [event(1, 0, "RUNNING"), event(2, 500, None, kind="info"), event(3, 900, "FAILED")]
    logs = [line(1, 600), line(2, 300), line(3, 700)]  # stdout/stderr stamps interleave
    got = names(order.merge(events, logs))
    assert [n for n in got if n[0] == "l"] == ["l1", "l2", "l3"]
    assert got[0] == "e1" and got[-1] == "e3"


def test_windows_carry_over_batches_and_attempts() -> None:
    order = Interleaver()
    assert names(order.merge([event(1, 100, "RUNNING")], [])) == ["e1"]
    # Next batch: lines stamped before RUNNING (already streamed) still come after it.
    assert names(order.merge([], [line(1, 50)])) == ["l1"]
    retry = [event(2, 1000, "PENDING", attempt=2), event(3, 2000, "RUNNING", attempt=2)]
    assert order.ends_a_window(retry)
    got = names(order.merge(retry, [line(2, 900), line(3, 1900, attempt=2)]))
    assert got == ["l2", "e2", "e3", "l3"]


def test_a_batch_ends_a_window_only_after_running() -> None:
    assert not Interleaver().ends_a_window([event(1, 0, "PENDING"), event(2, 10, "SCHEDULED")])
    assert Interleaver().ends_a_window([event(1, 0, "RUNNING"), event(2, 10, "SUCCEEDED")])
    assert not Interleaver().ends_a_window([event(1, 0, "RUNNING")])
