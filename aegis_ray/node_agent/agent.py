"""The node agent: one long-lived supervisor of every agent container on its machine.

It owns the machine's Docker client and, for each container: starts it (or takes over the one
that is already there), follows its logs as the engine writes them (one blocking reader thread
per running container, woken by the engine, never a timer), keeps the lines until the caller
has them, sees the exit, stops it at its deadline, and removes it when told. After a restart of
the agent, `adopt` finds every aegis container by its labels and follows it again from its first
line: lines are numbered the same on every read (see `adapters/docker/logs.py`), so a caller
that resumes with its cursor gets each line exactly once.

Secrets: a spec with secret references carries single-use OpenBao wrapping tokens, never
values. `start` redeems them (before anything is created), gives the container its env values
and its files (tmpfs, read-only), and keeps the values in this process's memory only, to replace
them in every line it hands out (`[REDACTED:NAME#KEY]`, see core/redaction.py). After a restart
of the agent, the values of a container it takes over are read back from where the container
already holds them (its env in the engine, its files on the node's tmpfs); where that fails, its
output is withheld rather than shown unredacted.

Nothing here knows about Ray: `actor.py` makes it a Ray actor, and the same class can serve an
edge daemon behind a relay. Its whole interface is `start`, `follow`, `stop`, `remove`, `list`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from docker.errors import NotFound
from docker.types import Mount
from hvac.exceptions import VaultError

from aegis_ray.adapters.docker.container import (
    LABEL_NODE,
    ContainerSpec,
    LaunchError,
    LogLine,
    container_name,
)
from aegis_ray.adapters.docker.logs import (
    LineAssembler,
    frames,
    open_log_stream,
    replay,
)
from aegis_ray.adapters.docker.runtime import DockerRuntime, Exit, Managed
from aegis_ray.adapters.docker.secret_files import SecretFiles
from aegis_ray.adapters.openbao.client import SecretNotFound, SecretsUnavailable
from aegis_ray.adapters.openbao.redeem import redeem
from aegis_ray.core.models.node import DEFAULT_DOCKER_NETWORK
from aegis_ray.core.redaction import Redactor

log = logging.getLogger(__name__)
T = TypeVar("T")

# Lines a container may have waiting for its caller; past that its reader stops reading (the
# engine keeps writing the bounded json-file log), so a chatty agent cannot fill this process.
MAX_PENDING_LINES = 20_000
MAX_PENDING_BYTES = 32 << 20
# One follow answer carries at most this many bytes of text (and at least one line): a caller
# asking for 1,000 lines of a chatty agent gets a bounded message, not 1,000 MiB.
MAX_BATCH_BYTES = 4 << 20
# Docker calls (create, start, stop, remove, inspect) run in this many threads at most.
DOCKER_THREADS = 64
STOP_GRACE_S = 3.0
# How many removed attempts the agent remembers the reason of.
REMEMBER_REMOVED = 1000
# How often a broken log stream is opened again before the container is reported unreadable.
READ_TRIES = 6

Key = tuple[str, int]  # (execution id, attempt)
Redact = Callable[[str], str]
WITHHELD = (
    "[REDACTED:output withheld: the node agent restarted and could not recover this "
    "container's secret values]"
)


@dataclass(frozen=True)
class Batch:
    """Lines after the caller's cursor, and, once the last line is out, how the container ended."""

    lines: list[LogLine]
    done: bool = False  # no line will follow these
    exit_code: int | None = None
    oom_killed: bool = False
    timed_out: bool = False  # the agent stopped it at its deadline
    gone: str | None = None  # it vanished before it ended (removed, or never there): why
    error: str | None = None  # what the engine or the reader reported, if anything


@dataclass(frozen=True)
class ContainerInfo:
    execution_id: str
    attempt: int
    container_id: str
    running: bool
    placement_group_id: str


@dataclass
class _Supervised:
    """One followed container: lines not yet acknowledged by the caller, and how it ended."""

    managed: Managed
    changed: asyncio.Event
    loop: asyncio.AbstractEventLoop
    lines: deque[LogLine] = field(default_factory=deque)
    pending_bytes: int = 0
    ended: Exit | None = None
    gone: str | None = None
    timed_out: bool = False
    closed: bool = False  # removed by the agent: the reader must not wait for room
    cond: threading.Condition = field(default_factory=threading.Condition)
    deadline: asyncio.TimerHandle | None = None
    # Replaces the container's secret values in each line before it is kept (None: it has none).
    redact: Redact | None = None

    @property
    def done(self) -> bool:
        return self.ended is not None or self.gone is not None

    def push(self, lines: list[LogLine]) -> None:
        """Called by the reader thread; waits while the caller is behind (backpressure)."""
        if not lines:
            return
        if self.redact is not None:
            redact = self.redact
            lines = [dataclasses.replace(ln, text=redact(ln.text)) for ln in lines]
        with self.cond:
            while (
                len(self.lines) >= MAX_PENDING_LINES or self.pending_bytes >= MAX_PENDING_BYTES
            ) and not self.closed:
                self.cond.wait(1.0)
            self.lines.extend(lines)
            self.pending_bytes += sum(len(ln.text) for ln in lines)
        self._wake()

    def finish(self, ended: Exit | None, gone: str | None = None) -> None:
        with self.cond:
            self.ended, self.gone = ended, gone
        self._wake()

    def ack(self, after_seq: int) -> None:
        """Forget the lines the caller has (sequence numbers up to `after_seq`)."""
        with self.cond:
            while self.lines and self.lines[0].seq <= after_seq:
                self.pending_bytes -= len(self.lines.popleft().text)
            self.cond.notify_all()

    def take(self, limit: int, max_bytes: int = MAX_BATCH_BYTES) -> tuple[list[LogLine], bool]:
        """Up to `limit` unacknowledged lines of at most `max_bytes` of text (at least one),
        and whether they are the last ones."""
        with self.cond:
            out: list[LogLine] = []
            size = 0
            for line in itertools.islice(self.lines, limit):
                size += len(line.text)
                if out and size > max_bytes:
                    break
                out.append(line)
            return out, self.done and len(out) == len(self.lines)

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody is waiting
            self.loop.call_soon_threadsafe(self.changed.set)


class NodeAgent:
    """Supervises every aegis container on one Docker engine (see the module docstring)."""

    def __init__(
        self,
        runtime: DockerRuntime | None = None,
        *,
        node_name: str = "",
        allowed_network: str = DEFAULT_DOCKER_NETWORK,
        secret_files: SecretFiles | None = None,
    ) -> None:
        self.runtime = runtime or DockerRuntime()
        self.secret_files = secret_files or SecretFiles()
        self.node_name = node_name
        # The Docker network of containers whose manifest allows network (the node's
        # `spec.runtime.docker_network_mode`); the others get none.
        self.allowed_network = allowed_network
        self._pool = ThreadPoolExecutor(DOCKER_THREADS, thread_name_prefix="aegis-docker")
        self._supervised: dict[Key, _Supervised] = {}
        self._starting: dict[Key, asyncio.Lock] = {}
        # Images seen present: an IfNotPresent launch skips asking the engine again.
        self._images: set[str] = set()
        # Why recently removed containers went, for a caller that asks after the fact.
        self._removed: OrderedDict[Key, str] = OrderedDict()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def adopt(self) -> int:
        """Follow every aegis container the engine has (after a restart of the agent)."""
        # Only this node's: other nodes (or clusters) may share the engine (tests, benchmarks).
        found = await self._call(self.runtime.managed, [f"{LABEL_NODE}={self.node_name}"])
        await self._call(
            self.secret_files.keep_only, [container_name(m.execution_id, m.attempt) for m in found]
        )
        for managed in found:
            await self._supervise_found(managed)
        return len(found)

    async def start(self, spec: ContainerSpec) -> str:
        """Start the attempt's container, or take over the one it already has; its id."""
        if spec.network_mode != "none":
            spec = dataclasses.replace(spec, network_mode=self.allowed_network)
        spec = dataclasses.replace(spec, node_id=self.node_name)
        spec.validate()
        key = (spec.execution_id, spec.attempt)
        async with self._starting.setdefault(key, asyncio.Lock()):
            try:
                if key in self._supervised:
                    return self._supervised[key].managed.container_id
                existing = await self._call(self.runtime.find, spec.execution_id, spec.attempt)
                if existing is not None:
                    await self._supervise_found(existing)
                    return existing.container_id
                # Redeemed first: the wrapping tokens live a minute, an image pull may not.
                values = await self._call(_redeem, spec)
                if spec.pull_policy != "IfNotPresent" or spec.image not in self._images:
                    await self._call(self.runtime.ensure_image, spec)
                    self._images.add(spec.image)
                started_at = time.time()
                try:
                    container_id = await self._call(self._create, spec, values)
                except LaunchError as err:
                    if err.code == "image_not_found":  # removed from the engine since
                        self._images.discard(spec.image)
                    raise
                self._supervise(
                    Managed(
                        container_id=container_id,
                        execution_id=spec.execution_id,
                        attempt=spec.attempt,
                        running=True,
                        started_at=started_at,
                        timeout_s=spec.timeout_s,
                        placement_group_id=spec.placement_group_id,
                    ),
                    Redactor(values) if values else None,
                )
                return container_id
            finally:
                self._starting.pop(key, None)

    async def follow(
        self,
        execution_id: str,
        attempt: int,
        *,
        after_seq: int = -1,
        max_lines: int = 1000,
        wait_s: float = 10.0,
    ) -> Batch:
        """Lines after `after_seq` as soon as there are any (or the end), else after `wait_s`.

        The lines up to `after_seq` are forgotten: the caller has them. Lines handed out but
        not yet acknowledged come again on the next call with the same cursor.
        """
        key = (execution_id, attempt)
        sup = self._supervised.get(key)
        if sup is None:
            managed = await self._call(self.runtime.find, execution_id, attempt)
            if managed is None:
                where = f" on node {self.node_name}" if self.node_name else ""
                why = self._removed.get(key, f"no container for this attempt{where}")
                return Batch([], done=True, gone=why)
            sup = await self._supervise_found(managed)
        sup.ack(after_seq)
        sup.changed.clear()
        lines, last = sup.take(max_lines)
        if not lines and not sup.done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sup.changed.wait(), wait_s)
            lines, last = sup.take(max_lines)
        if not last:
            return Batch(lines)
        ended = sup.ended or Exit(None, False, None)
        return Batch(
            lines,
            done=True,
            exit_code=ended.exit_code,
            oom_killed=ended.oom_killed,
            timed_out=sup.timed_out,
            gone=sup.gone,
            error=ended.error,
        )

    async def stop(self, execution_id: str, attempt: int, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; its logs stay readable until `remove`."""
        managed = await self._find(execution_id, attempt)
        if managed is not None:
            await self._call(self.runtime.stop, managed.container_id, grace_s)

    async def remove(self, execution_id: str, attempt: int, *, why: str = "removed") -> bool:
        """Remove the attempt's container (stopping it first if it runs); False if none."""
        key = (execution_id, attempt)
        managed = await self._find(execution_id, attempt)
        sup = self._supervised.pop(key, None)
        self._removed[key] = why
        while len(self._removed) > REMEMBER_REMOVED:
            self._removed.popitem(last=False)
        if sup is not None:
            if sup.deadline is not None:
                sup.deadline.cancel()
            with sup.cond:
                sup.closed = True
                sup.cond.notify_all()
            if not sup.done:
                sup.finish(None, gone=why)
        if managed is None:
            return False
        await self._call(self.runtime.remove, managed.container_id)
        await self._call(self.secret_files.remove, container_name(execution_id, attempt))
        return True

    def list(self) -> list[ContainerInfo]:
        """The containers this agent follows."""
        return [
            ContainerInfo(
                execution_id=s.managed.execution_id,
                attempt=s.managed.attempt,
                container_id=s.managed.container_id,
                running=not s.done,
                placement_group_id=s.managed.placement_group_id,
            )
            for s in self._supervised.values()
        ]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- supervision ----------------------------------------------------------------------

    async def _find(self, execution_id: str, attempt: int) -> Managed | None:
        sup = self._supervised.get((execution_id, attempt))
        if sup is not None:
            return sup.managed
        return await self._call(self.runtime.find, execution_id, attempt)

    def _create(self, spec: ContainerSpec, values: dict[str, str]) -> str:
        """Create and start the container with its secret values (env and tmpfs files)."""
        secret_env: dict[str, str] = {}
        mounts: list[Mount] = []
        name = spec.container_name
        if spec.secrets is not None:
            secret_env = {e.env: values[str(e.ref)] for e in spec.secrets.env}
            files = [(f.path, values[str(f.ref)]) for f in spec.secrets.files]
            mounts = self.secret_files.write(name, files)
        try:
            return self.runtime.start(spec, secret_env=secret_env, secret_mounts=mounts)
        except BaseException:
            self.secret_files.remove(name)
            raise

    async def _supervise_found(self, managed: Managed) -> _Supervised:
        """Follow a container found on the engine, redacting its secrets as when it started."""
        key = (managed.execution_id, managed.attempt)
        if key in self._supervised or not managed.secret_places:
            return self._supervise(managed)
        try:
            redact: Redact = await self._call(self._recovered, managed)
        except (OSError, KeyError, LookupError) as err:
            log.warning(
                "container %s: secret values not recovered (%s): its output is withheld",
                managed.container_id[:12],
                type(err).__name__,  # the error's text could hold a value
            )
            redact = _withhold
        return self._supervise(managed, redact)

    def _recovered(self, managed: Managed) -> Redactor:
        """The redactor of a container started before this agent: its values read back from
        the container's env and its secret files."""
        places = managed.secret_places
        values: dict[str, str] = {}
        if places.env:
            env = self.runtime.container_env(managed.container_id)
            values |= {ref: env[name] for name, ref in places.env.items()}
        if places.files:
            name = container_name(managed.execution_id, managed.attempt)
            contents = self.secret_files.read(name, len(places.files))
            values |= {ref: text for (_, ref), text in zip(places.files, contents, strict=True)}
        return Redactor(values)

    def _supervise(self, managed: Managed, redact: Redact | None = None) -> _Supervised:
        key = (managed.execution_id, managed.attempt)
        if key in self._supervised:
            return self._supervised[key]
        loop = asyncio.get_running_loop()
        sup = _Supervised(managed=managed, changed=asyncio.Event(), loop=loop, redact=redact)
        self._supervised[key] = sup
        if managed.timeout_s is not None:
            started = managed.started_at or time.time()
            delay = max(0.0, started + managed.timeout_s - time.time())
            sup.deadline = loop.call_later(delay, self._on_deadline, key)
        threading.Thread(
            target=self._read,
            args=(sup,),
            name=f"aegis-logs-{managed.container_id[:12]}",
            daemon=True,
        ).start()
        return sup

    def _on_deadline(self, key: Key) -> None:
        sup = self._supervised.get(key)
        if sup is None or sup.done:
            return
        sup.timed_out = True
        log.info("container %s passed its deadline: stopping", sup.managed.container_id[:12])
        asyncio.ensure_future(
            self._call(self.runtime.stop, sup.managed.container_id, STOP_GRACE_S)
        )

    def _read(self, sup: _Supervised) -> None:
        """The reader thread: follow the logs to their end, then collect how it ended.

        A broken stream (the engine restarting, a dropped connection) is read again from the
        start; lines already handed over are recognised by their sequence number and skipped.
        """
        cid = sup.managed.container_id
        delivered = 0  # lines pushed so far: sequence numbers below this are already out
        error = ""
        for attempt in range(READ_TRIES):
            assembler = LineAssembler()

            def push(lines: list[LogLine]) -> None:
                nonlocal delivered
                fresh = [ln for ln in lines if ln.seq >= delivered]
                sup.push(fresh)
                delivered += len(fresh)

            try:
                api = self.runtime.client.api
                with contextlib.closing(open_log_stream(api, cid, follow=True)) as response:
                    for stream, frame in frames(response.raw):
                        push(assembler.feed(stream, frame))
                ended = self.runtime.wait(cid)
                # The engine may end a follow before it wrote the last output (always so for an
                # unterminated last line): read the whole log again and take what was not seen.
                with contextlib.closing(open_log_stream(api, cid, follow=False)) as response:
                    push(replay(assembler, frames(response.raw)))
                push(assembler.flush())
            except NotFound:
                push(assembler.flush())
                sup.finish(None, gone=f"container {cid[:12]} no longer exists")
                return
            except Exception as err:  # the engine went away mid-stream: read again
                log.warning("container %s: log reader failed (%d): %s", cid[:12], attempt, err)
                time.sleep(min(8.0, 0.5 * 2**attempt))
                error = f"log reader failed: {err}"
                continue
            if ended.exit_code is None:  # removed before its end was seen
                sup.finish(None, gone=ended.error or "container removed")
            else:
                sup.finish(ended)
            return
        sup.finish(Exit(None, False, error))


def _redeem(spec: ContainerSpec) -> dict[str, str]:
    """The values of the spec's secret references ({"NAME#KEY": value}; {} without any)."""
    if spec.secrets is None:
        return {}
    try:
        return redeem(spec.secrets)
    except SecretNotFound as err:
        raise LaunchError("secret_not_found", str(err)) from None
    except SecretsUnavailable as err:
        raise LaunchError("secrets_unavailable", str(err)) from None
    except VaultError as err:  # OpenBao's own error text: it never holds a value
        raise LaunchError("secrets_unavailable", f"OpenBao refused: {err}") from None


def _withhold(text: str) -> str:
    return WITHHELD
