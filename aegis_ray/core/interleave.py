"""Ordering an execution's events and log lines into one stream (WatchExecution, /watch).

Events carry the database's clock, log lines the Docker engine's clock of the node that ran
the container, and the two may disagree (another machine, or a line printed before the
RUNNING row was written). So time only orders lines *within* what causality allows: an
attempt's output comes after its RUNNING event and before the state change that ends it.
Each kind keeps its own id order.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aegis_ray.core.models.execution import ExecutionState


@dataclass
class Interleaver:
    """Remembers, across batches, when each attempt's output window opened and closed."""

    opened: dict[int, datetime] = field(default_factory=dict)
    closed: dict[int, datetime] = field(default_factory=dict)
    running: int | None = None

    def ends_a_window(self, events: list[Any]) -> bool:
        """Does this batch end a running attempt? Then its last lines may still need fetching."""
        running = self.running
        for e in events:
            if e.kind == "state" and e.to_state:
                if e.to_state == ExecutionState.RUNNING:
                    running = e.attempt
                elif running is not None:
                    return True
        return False

    def merge(self, events: list[Any], logs: list[Any]) -> list[tuple[str, Any]]:
        """One batch of events and log lines as ("event"|"log", row), in stream order."""
        for e in events:
            if e.kind != "state" or not e.to_state:
                continue
            if e.to_state == ExecutionState.RUNNING:
                self.running = e.attempt
                self.opened[e.attempt] = e.ts
            elif self.running is not None:
                self.closed[self.running] = e.ts
                self.running = None
        # Keys: (time, rank). At equal times an opening event goes before the lines it opens
        # (rank 1 < 2) and lines go before the event that closes them (rank 0 < 1).
        keyed_events = [((e.ts, 1), ("event", e)) for e in events]
        keyed_logs = [(self._key(ln), ("log", ln)) for ln in logs]
        merged = heapq.merge(keyed_events, keyed_logs, key=lambda item: item[0])
        return [item for _, item in merged]

    def _key(self, line: Any) -> tuple[datetime, int]:
        start, end = self.opened.get(line.attempt), self.closed.get(line.attempt)
        if start is not None and line.ts <= start:
            return (start, 2)
        if end is not None and line.ts >= end:
            return (end, 0)
        return (line.ts, 1)
