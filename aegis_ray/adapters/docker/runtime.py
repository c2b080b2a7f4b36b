"""Run one agent container through the local Docker engine, with the limits enforced there.

Ray's resources are only bookkeeping; the engine is what actually holds a container to its CPU,
memory and pids share. Disk is not enforced: overlay2 on ext4 cannot cap a container's writable
layer (``storage_opt size`` needs xfs with pquota), so the root filesystem is read-only and the
only writable place is a small tmpfs at /tmp.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig
from docker.utils import parse_repository_tag

from aegis_ray.adapters.docker.container import (
    LABEL_ATTEMPT,
    LABEL_EXECUTION_ID,
    LABEL_MANAGED,
    ContainerSpec,
    LaunchError,
    LogLine,
    PollResult,
)

log = logging.getLogger(__name__)

API_TIMEOUT_S = 30
PULL_TIMEOUT_S = 300.0
NOBODY = "65534:65534"
TMPFS = {"/tmp": "rw,nosuid,nodev,size=64m,mode=1777"}
# Bounded json-file logs: the follower reads them as they are written.
LOG_CONFIG = LogConfig(type="json-file", config={"max-size": "20m", "max-file": "3"})
# A poll returns at most this many lines, so one Ray message stays small; the rest wait.
MAX_LINES_PER_POLL = 5000
# Lines kept for a caller that stops polling; beyond this the oldest are dropped and counted.
MAX_BUFFERED_LINES = 100_000
# A line longer than this is cut, so a stream without newlines cannot grow without bound.
MAX_LINE_BYTES = 1 << 20
# How long a line waits for earlier lines of the other stream before a poll hands it out.
REORDER_WINDOW_S = 0.25
# After the container exits, how long the log readers get to reach the end of the logs.
READER_WAIT_PER_POLL_S = 1.0
READER_GIVE_UP_S = 15.0

_TS = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _parse_stamp(raw: bytes) -> tuple[bytes, float] | None:
    """Docker's RFC 3339 timestamp with nanoseconds -> (sortable key, unix seconds)."""
    m = _TS.match(raw)
    if m is None:
        return None
    zone = "+00:00" if m.group(3) == b"Z" else m.group(3).decode()
    base = datetime.fromisoformat(m.group(1).decode() + zone).timestamp()
    frac = m.group(2) or b"0"
    return m.group(1) + b"." + frac.ljust(9, b"0"), base + float(b"0." + frac)


class _LogBuffer:
    """Lines from both streams of one container, appended by readers, drained by polls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: deque[LogLine] = deque()
        self._dropped = 0

    def append(self, line: LogLine) -> None:
        with self._lock:
            self._lines.append(line)
            if len(self._lines) > MAX_BUFFERED_LINES:
                self._lines.popleft()
                self._dropped += 1

    def drain(self, limit: int, *, settled: bool) -> tuple[list[LogLine], bool]:
        """Up to ``limit`` lines in time order, and whether more are waiting.

        The two readers run independently, so a stderr line may arrive after a later stdout
        line: unless ``settled`` (both readers finished), lines younger than the reorder
        window stay buffered until the other reader had the time to catch up.
        """
        with self._lock:
            # Each stream is in order already; a stable sort by engine time interleaves them.
            lines = sorted(self._lines, key=lambda ln: ln.ts)
            cut = len(lines)
            if not settled:
                cut = bisect.bisect_right(lines, time.time() - REORDER_WINDOW_S, key=_ts)
            n = min(cut, limit)
            out, self._lines = lines[:n], deque(lines[n:])
            if self._dropped:
                text = f"[aegis] {self._dropped} log lines dropped: nobody collected them in time"
                out.insert(0, LogLine(time.time(), "stderr", text))
                self._dropped = 0
            return out, bool(self._lines)


def _ts(line: LogLine) -> float:
    return line.ts


class _LogFollower:
    """Two daemon threads following a container's stdout and stderr until the logs end."""

    def __init__(self, api: Any, container_id: str) -> None:
        self.buffer = _LogBuffer()
        self.error: str | None = None
        self.exited_seen_at: float | None = None
        self._threads = [
            threading.Thread(
                target=self._follow,
                args=(api, container_id, stream),
                name=f"aegis-logs-{container_id[:12]}-{stream}",
                daemon=True,
            )
            for stream in ("stdout", "stderr")
        ]
        for t in self._threads:
            t.start()

    @property
    def done(self) -> bool:
        return not any(t.is_alive() for t in self._threads)

    def wait(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        return self.done

    def _follow(self, api: Any, container_id: str, stream: str) -> None:
        which = {"stdout": stream == "stdout", "stderr": stream == "stderr", "timestamps": True}
        last_key, at_last_key, last_ts = b"", set[str](), 0.0
        try:
            frames = api.logs(container_id, stream=True, follow=True, **which)
            for key, ts, text in _lines_of(frames, flush_partial=False):
                self.buffer.append(LogLine(ts, stream, text))
                if key != last_key:
                    last_key, at_last_key = key, set()
                at_last_key.add(text)
                last_ts = ts
            # The engine may end a follow before it has written a container's last output
            # (an unterminated last line always): once it stopped, read on from the last line.
            api.wait(container_id)
            since = last_ts - 0.001 if last_ts else None
            rest = api.logs(container_id, stream=True, follow=False, since=since, **which)
            for key, ts, text in _lines_of(rest):
                if key < last_key or (key == last_key and text in at_last_key):
                    continue
                self.buffer.append(LogLine(ts, stream, text))
        except NotFound:
            pass  # removed while we read: nothing more will come
        except Exception as err:  # the engine went away mid-stream; report it once
            self.error = f"log reader for {stream} failed: {err}"
            log.warning("container %s: %s", container_id[:12], self.error)


def _lines_of(
    frames: Iterator[bytes], *, flush_partial: bool = True
) -> Iterator[tuple[bytes, float, str]]:
    """Turn the engine's log messages ("<timestamp> <text>") into (stamp key, ts, line).

    The engine splits lines over 16 KiB into several messages, each with its own timestamp and
    only the last ending in a newline; those are joined again here, under the first stamp. A
    last line without a newline is yielded only with ``flush_partial``.
    """
    pending = b""
    first: tuple[bytes, float] | None = None
    for frame in frames:
        stamp, sep, body = frame.partition(b" ")
        parsed = _parse_stamp(stamp) if sep else None
        if parsed is None:  # no timestamp prefix: keep the frame whole
            parsed, body = (b"", time.time()), frame
        start = first or parsed  # a line carries the stamp of its first piece
        pending += body
        while b"\n" in pending:
            line, _, pending = pending.partition(b"\n")
            yield start[0], start[1], _text(line)
            start = parsed
        first = start if pending else None
        if len(pending) > MAX_LINE_BYTES:
            yield start[0], start[1], _text(pending)
            pending, first = b"", None
    if pending and first is not None and flush_partial:
        yield first[0], first[1], _text(pending)


def _text(raw: bytes) -> str:
    return raw.removesuffix(b"\r").decode("utf-8", errors="replace")


class DockerRuntime:
    """Start, watch, stop and remove aegis containers on this node's Docker engine."""

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        pull_timeout_s: float = PULL_TIMEOUT_S,
    ) -> None:
        self._client = client
        self._pull_timeout_s = pull_timeout_s
        self._lock = threading.Lock()
        self._followers: dict[str, _LogFollower] = {}

    @property
    def client(self) -> docker.DockerClient:
        """The engine client, connected on first use."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = docker.from_env(timeout=API_TIMEOUT_S)
                except DockerException as err:
                    raise LaunchError(
                        "docker_unavailable", f"Docker engine not reachable: {err}"
                    ) from err
            return self._client

    # -- images ---------------------------------------------------------------------------

    def ensure_image(self, spec: ContainerSpec) -> None:
        """Make the spec's image present locally, as its pull policy allows."""
        present = self._image_present(spec.image)
        if spec.pull_policy == "Never":
            if not present:
                raise LaunchError(
                    "image_not_found",
                    f"image {spec.image} not present on node {socket.gethostname()} "
                    "and image_pull_policy is Never",
                )
            return
        if spec.pull_policy == "IfNotPresent" and present:
            return
        self._pull(spec.image)

    def _image_present(self, image: str) -> bool:
        try:
            self.client.images.get(image)
            return True
        except ImageNotFound:
            return False
        except (DockerException, requests.exceptions.ConnectionError) as err:
            raise LaunchError("docker_unavailable", f"Docker engine not reachable: {err}") from err

    def _pull(self, image: str) -> None:
        """Pull with a deadline: the engine's pull call itself has none."""
        outcome: dict[str, str | None] = {}

        def run() -> None:
            try:
                repo, tag = parse_repository_tag(image)
                for msg in self.client.api.pull(
                    repo, tag=tag or "latest", stream=True, decode=True
                ):
                    if "error" in msg:
                        outcome["error"] = str(msg["error"])
                outcome.setdefault("error", None)
            except Exception as err:
                outcome["error"] = str(err)

        t = threading.Thread(target=run, name=f"aegis-pull-{image}", daemon=True)
        t.start()
        t.join(self._pull_timeout_s)
        if t.is_alive():
            raise LaunchError(
                "image_pull_failed",
                f"pulling image {image} did not finish within {self._pull_timeout_s:g}s",
            )
        error = outcome.get("error")
        if error is None and not self._image_present(image):
            error = "the engine reported success but the image is not present"
        if error is not None:
            raise LaunchError("image_pull_failed", f"pulling image {image} failed: {error}")

    # -- containers -----------------------------------------------------------------------

    def start(self, spec: ContainerSpec) -> str:
        """Create and start the spec's container with its limits; returns the container id."""
        spec.validate()
        env = {
            "HOME": "/tmp",  # nobody has no writable home; /tmp is the one writable place
            **spec.env,
            "AEGIS_EXECUTION_ID": spec.execution_id,
            "AEGIS_ATTEMPT": str(spec.attempt),
        }
        kwargs: dict[str, Any] = dict(
            image=spec.image,
            command=list(spec.command) if spec.command else None,
            name=spec.container_name,
            environment=env,
            labels=spec.all_labels(),
            nano_cpus=spec.cpu_millis * 1_000_000,
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,  # equal to the memory limit: no swap
            pids_limit=spec.pids_limit,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            user=NOBODY,
            read_only=True,
            tmpfs=dict(TMPFS),
            network_mode=spec.network_mode,
            # A tiny init as PID 1 forwards SIGTERM, so `stop` ends most agents without SIGKILL.
            init=True,
            auto_remove=False,  # exit code and logs are collected before removal
            log_config=LOG_CONFIG,
            # No volumes or mounts, ever: above all not the Docker socket.
        )
        container = self._create(spec, kwargs)
        try:
            container.start()
        except (DockerException, requests.exceptions.RequestException) as err:
            self.remove(container.id)
            raise LaunchError(
                "start_failed", f"container for image {spec.image} did not start: {err}"
            ) from err
        cid: str = container.id
        api = self.client.api  # outside the lock: the property takes it too
        with self._lock:
            self._followers[cid] = _LogFollower(api, cid)
        return cid

    def _create(self, spec: ContainerSpec, kwargs: dict[str, Any]) -> Any:
        for _ in range(2):
            try:
                return self.client.containers.create(**kwargs)
            except ImageNotFound as err:
                raise LaunchError(
                    "image_not_found",
                    f"image {spec.image} not present on node {socket.gethostname()}: {err}",
                ) from err
            except APIError as err:
                if err.status_code != 409 or not self._remove_stale(spec):
                    raise LaunchError(
                        "start_failed", f"creating container {spec.container_name}: {err}"
                    ) from err
            except (DockerException, requests.exceptions.ConnectionError) as err:
                raise LaunchError(
                    "docker_unavailable", f"Docker engine not reachable: {err}"
                ) from err
        raise LaunchError(
            "start_failed", f"container name {spec.container_name} is still taken after removal"
        )

    def _remove_stale(self, spec: ContainerSpec) -> bool:
        """Remove a same-named container left by an earlier launcher of this very attempt."""
        try:
            old = self.client.containers.get(spec.container_name)
        except NotFound:
            return True  # gone meanwhile
        labels = old.labels or {}
        same = labels.get(LABEL_EXECUTION_ID) == spec.execution_id and labels.get(
            LABEL_ATTEMPT
        ) == str(spec.attempt)
        if same:
            log.warning("removing stale container %s of the same attempt", old.id[:12])
            self.remove(old.id)
        return same

    def poll(self, container_id: str) -> PollResult:
        """Lines since the last poll and the container's state; never blocks for long.

        ``running`` turns False only once the log readers reached the end of the logs and
        every line was handed out, so the last lines a container prints are never lost.
        """
        follower = self._follower(container_id)
        try:
            state = self.client.api.inspect_container(container_id)["State"]
        except NotFound:
            follower.wait(READER_WAIT_PER_POLL_S)
            # Last poll of this container: hand out everything that is left.
            lines, _ = follower.buffer.drain(MAX_BUFFERED_LINES + 1, settled=True)
            with self._lock:
                self._followers.pop(container_id, None)
            return PollResult(
                lines, False, None, error=f"container {container_id[:12]} no longer exists"
            )
        if state["Status"] not in ("exited", "dead"):
            lines, _ = follower.buffer.drain(MAX_LINES_PER_POLL, settled=False)
            return PollResult(lines, True, None)
        if follower.exited_seen_at is None:
            follower.exited_seen_at = time.monotonic()
        finished = follower.wait(READER_WAIT_PER_POLL_S)
        gave_up = time.monotonic() - follower.exited_seen_at > READER_GIVE_UP_S
        lines, more = follower.buffer.drain(MAX_LINES_PER_POLL, settled=finished or gave_up)
        if more or not (finished or gave_up):
            return PollResult(lines, True, None)
        error = state.get("Error") or follower.error
        if not finished:
            error = error or "log reader did not reach the end of the logs; lines may be missing"
        return PollResult(
            lines,
            False,
            int(state["ExitCode"]),
            oom_killed=bool(state.get("OOMKilled")),
            error=error or None,
        )

    def _follower(self, container_id: str) -> _LogFollower:
        # A runtime that did not start the container follows it from its first line.
        with self._lock:
            follower = self._followers.get(container_id)
        if follower is None:
            follower = _LogFollower(self.client.api, container_id)
            with self._lock:
                follower = self._followers.setdefault(container_id, follower)
        return follower

    def is_running(self, container_id: str) -> bool:
        try:
            state = self.client.api.inspect_container(container_id)["State"]
        except NotFound:
            return False
        return state["Status"] not in ("exited", "dead")

    def stop(self, container_id: str, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; a container already gone is fine."""
        with contextlib.suppress(NotFound):
            self.client.api.stop(container_id, timeout=max(0, math.ceil(grace_s)))

    def remove(self, container_id: str) -> None:
        """Force-remove the container; a container already gone is fine."""
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except NotFound:
            pass
        except APIError as err:
            if err.status_code != 409:  # 409: removal already in progress
                raise
        with self._lock:
            self._followers.pop(container_id, None)

    def remove_for_execution(self, execution_id: str) -> int:
        """Remove every aegis container of an execution (any attempt); returns how many."""
        found = self.client.api.containers(
            all=True,
            filters={"label": [f"{LABEL_EXECUTION_ID}={execution_id}", f"{LABEL_MANAGED}=true"]},
        )
        for c in found:
            self.remove(c["Id"])
        return len(found)

    def inspect_limits(self, container_id: str) -> dict[str, Any]:
        """The limits and isolation settings the engine holds for a container."""
        attrs = self.client.api.inspect_container(container_id)
        host, config = attrs["HostConfig"], attrs["Config"]
        return {
            "NanoCpus": host.get("NanoCpus"),
            "Memory": host.get("Memory"),
            "MemorySwap": host.get("MemorySwap"),
            "PidsLimit": host.get("PidsLimit"),
            "CapDrop": host.get("CapDrop"),
            "CapAdd": host.get("CapAdd"),
            "Privileged": host.get("Privileged"),
            "SecurityOpt": host.get("SecurityOpt"),
            "NetworkMode": host.get("NetworkMode"),
            "ReadonlyRootfs": host.get("ReadonlyRootfs"),
            "Tmpfs": host.get("Tmpfs"),
            "Init": host.get("Init"),
            "User": config.get("User"),
            "Labels": config.get("Labels"),
            "Mounts": [m.get("Source") for m in attrs.get("Mounts") or []],
        }
