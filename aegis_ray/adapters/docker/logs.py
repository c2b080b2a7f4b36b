"""Reading a container's logs from the Docker engine: multiplexed frames -> numbered lines.

One request carries both streams (the engine's multiplexed format: an 8-byte header per frame
naming stdout or stderr), in the order the engine stored them. Reading the same logs again gives
the same frames in the same order, so a line's sequence number (its index among the container's
lines) identifies it across readers: a follower that restarts re-reads from the start and skips
what its consumer already has, and nothing is delivered twice or lost.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, BinaryIO

from aegis_ray.adapters.docker.container import LogLine

_HEADER = struct.Struct(">BxxxL")
_STREAMS = {1: "stdout", 2: "stderr"}
# A line longer than this is cut: a stream without newlines cannot grow without bound.
MAX_LINE_BYTES = 1 << 20
_TS = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_stamp(raw: bytes) -> float | None:
    """Docker's RFC 3339 timestamp with nanoseconds -> unix seconds (None if it is not one)."""
    m = _TS.match(raw)
    if m is None:
        return None
    zone = "+00:00" if m.group(3) == b"Z" else m.group(3).decode()
    base = datetime.fromisoformat(m.group(1).decode() + zone).timestamp()
    return base + float(b"0." + (m.group(2) or b"0"))


def frames(raw: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(stream, payload) of each frame of the engine's multiplexed (non-TTY) log stream."""
    while True:
        header = _read_exactly(raw, _HEADER.size)
        if header is None:
            return
        kind, size = _HEADER.unpack(header)
        payload = _read_exactly(raw, size)
        if payload is None:
            return
        yield _STREAMS.get(kind, "stdout"), payload


def _read_exactly(raw: BinaryIO, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = raw.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class LineAssembler:
    """Turns frames ("<timestamp> <text>", per stream) into numbered lines.

    The engine splits lines over 16 KiB into several frames, each with its own timestamp and
    only the last ending in a newline; they are joined again here under the first stamp. A last
    line without a newline is handed out by `flush` once the container has ended.
    """

    def __init__(self) -> None:
        self.next_seq = 0
        self.frames_seen = 0
        self._pending: dict[str, tuple[float, bytes]] = {}

    def feed(self, stream: str, frame: bytes) -> list[LogLine]:
        self.frames_seen += 1
        stamp, sep, body = frame.partition(b" ")
        ts = parse_stamp(stamp) if sep else None
        if ts is None:  # no timestamp prefix: keep the frame whole
            ts, body = time.time(), frame
        first_ts, pending = self._pending.pop(stream, (ts, b""))
        pending += body
        out = []
        while b"\n" in pending:
            line, _, pending = pending.partition(b"\n")
            out.append(self._line(first_ts, stream, line))
            first_ts = ts
        if len(pending) > MAX_LINE_BYTES:
            out.append(self._line(first_ts, stream, pending))
            pending = b""
        if pending:
            self._pending[stream] = (first_ts, pending)
        return out

    def flush(self) -> list[LogLine]:
        """The unterminated last line of each stream, once nothing more will come."""
        out = [self._line(ts, stream, rest) for stream, (ts, rest) in self._pending.items()]
        self._pending.clear()
        return sorted(out, key=lambda ln: ln.seq)

    def _line(self, ts: float, stream: str, raw: bytes) -> LogLine:
        text = raw.removesuffix(b"\r").decode("utf-8", errors="replace")
        line = LogLine(self.next_seq, ts, stream, text)
        self.next_seq += 1
        return line


def open_log_stream(api: Any, container_id: str, *, follow: bool) -> Any:
    """The engine's raw multiplexed log stream of both streams, with timestamps.

    docker-py's own `logs()` drops the stream of each frame, so the request is made here (its
    `_get`/`_url` are private: docker is pinned below 8 in pyproject.toml). No read timeout: a
    quiet agent may print nothing for hours.
    """
    params = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": int(follow), "tail": "all"}
    url = api._url("/containers/{0}/logs", container_id)
    response = api._get(url, params=params, stream=True, timeout=None)
    api._raise_for_status(response)
    return response


def replay(assembler: LineAssembler, stream_frames: Iterable[tuple[str, bytes]]) -> list[LogLine]:
    """Lines of frames after the ones `assembler` has already seen (a second, full read)."""
    seen = assembler.frames_seen
    out: list[LogLine] = []
    for index, (stream, frame) in enumerate(stream_frames):
        if index >= seen:
            out += assembler.feed(stream, frame)
    return out
