"""Shared pieces of the benchmarks in scripts/: the REST client, the bare Docker baseline, and
host accounting (CPU from /proc, PSS from smaps_rollup) grouped into the stack's components.

Plain REST (httpx) and the Docker SDK only: nothing from aegis_ray is imported, so the
benchmarks measure the product from the outside, as a user's client would.

Where things are found, as the CLI finds them:
  * API: AEGIS_API_URL, else ``api_url`` in $AEGIS_HOME/up.json, else
    http://$AEGIS_API_HOST:$AEGIS_API_PORT (127.0.0.1:8080);
  * token: AEGIS_API_TOKEN, else $AEGIS_HOME/admin.token (AEGIS_HOME defaults to ~/.aegis);
  * the stack's processes: Ray sessions whose raylet or GCS serves the cluster of
    ``ray_address`` in up.json (AEGIS_RAY_PORT if there is no up.json), PostgreSQL's postmaster
    on the port of ``database_url`` (AEGIS_POSTGRES_PORT) and its children, the Temporal dev
    server on the port of ``temporal_address`` (AEGIS_TEMPORAL_PORT). Another aegis stack on the
    same host (other ports) is counted as "other processes", not as ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello-agent.yaml"
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "LOST")
TICK = os.sysconf("SC_CLK_TCK")
# Label on the bare baseline's containers (never aegis's own labels: a node agent adopts those).
BARE_LABEL = "aegis-bench/bare"


# -- statistics ---------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}x" if base > 0 else "n/a"


def table(rows: list[list[str]], header: list[str], right_from: int = 1) -> str:
    """A plain text table: first columns left-aligned, the rest right-aligned."""
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for n, row in enumerate(cells):
        parts = [
            c.ljust(widths[i]) if i < right_from else c.rjust(widths[i]) for i, c in enumerate(row)
        ]
        out.append("  ".join(parts).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


# -- where the stack is ----------------------------------------------------------------------


def _port(address: str | None, default: int) -> int:
    if not address:
        return default
    if "://" not in address:
        address = "x://" + address
    return urlsplit(address).port or default


@dataclass(frozen=True)
class Stack:
    home: Path
    api_url: str
    token: str
    ray_port: int
    postgres_port: int
    temporal_port: int

    @classmethod
    def from_env(cls) -> Stack:
        env = os.environ
        home = Path(env.get("AEGIS_HOME") or Path.home() / ".aegis")
        up: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            up = json.loads((home / "up.json").read_text())
        host, port = env.get("AEGIS_API_HOST", "127.0.0.1"), env.get("AEGIS_API_PORT", "8080")
        api = env.get("AEGIS_API_URL") or up.get("api_url") or f"http://{host}:{port}"
        token = env.get("AEGIS_API_TOKEN") or ""
        if not token:
            path = home / "admin.token"
            if not path.exists():
                raise SystemExit(f"no API token: set AEGIS_API_TOKEN or create {path} (aegis up)")
            token = path.read_text().strip()
        return cls(
            home=home,
            api_url=api.rstrip("/"),
            token=token,
            ray_port=_port(up.get("ray_address"), int(env.get("AEGIS_RAY_PORT", "6379"))),
            postgres_port=_port(
                up.get("database_url"), int(env.get("AEGIS_POSTGRES_PORT", "55432"))
            ),
            temporal_port=_port(
                up.get("temporal_address"), int(env.get("AEGIS_TEMPORAL_PORT", "7233"))
            ),
        )


# -- the REST client -------------------------------------------------------------------------


@dataclass
class Outcome:
    """One execution seen from the client: its POST time (client clock) and its row."""

    id: str
    posted: float  # time.time() just before the POST was sent
    accepted: float  # the POST's response received
    seen_done: float  # the client learned it was terminal
    state: str
    started_at: float | None  # the row's started_at (server clock, same host)
    finished_at: float | None
    reason: str | None

    @property
    def to_running(self) -> float | None:
        return None if self.started_at is None else self.started_at - self.posted

    @property
    def to_done(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.posted


def _stamp(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


class Api:
    """POST /v1/executions, GET /v1/executions/ID (+ /watch), POST .../cancel, over httpx."""

    def __init__(self, stack: Stack, *, connections: int = 64) -> None:
        self.http = httpx.Client(
            base_url=stack.api_url,
            headers={"Authorization": f"Bearer {stack.token}"},
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    def close(self) -> None:
        self.http.close()

    def _json(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
        return r.json()

    def health(self) -> Any:
        return self._json(self.http.get("/health"))

    def submit(self, manifest: str) -> tuple[float, float, dict[str, Any]]:
        """POST the manifest; (client time before sending, time of the answer, the row)."""
        t0 = time.time()
        r = self.http.post(
            "/v1/executions",
            params={"source": "bench"},
            content=manifest,
            headers={"Content-Type": "application/yaml"},
        )
        t1 = time.time()
        return t0, t1, self._json(r)

    def get(self, execution_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/executions/{execution_id}"))  # type: ignore[no-any-return]

    def events(self, execution_id: str) -> list[dict[str, Any]]:
        body = self._json(self.http.get(f"/v1/executions/{execution_id}/events"))
        return list(body["items"])

    def state_times(self, execution_id: str) -> dict[str, float]:
        """When the execution entered each state (event time, server clock)."""
        out: dict[str, float] = {}
        for e in self.events(execution_id):
            if e.get("kind") == "state" and e.get("to_state") and e.get("ts"):
                out.setdefault(e["to_state"], datetime.fromisoformat(e["ts"]).timestamp())
        return out

    def cancel(self, execution_id: str) -> Any:
        return self._json(self.http.post(f"/v1/executions/{execution_id}/cancel"))

    def wait_terminal(self, execution_id: str, deadline_s: float = 120.0) -> dict[str, Any]:
        """Block until the execution is terminal: follow its event stream (pushed by the server),
        polling GET every 0.1 s only if the stream breaks. The final row is returned."""
        until = time.monotonic() + deadline_s
        with (
            contextlib.suppress(httpx.HTTPError),
            self.http.stream(
                "GET",
                f"/v1/executions/{execution_id}/watch",
                params={"logs": "false"},
                timeout=httpx.Timeout(10.0, read=deadline_s),
            ) as stream,
        ):
            for line in stream.iter_lines():
                if '"end"' in line and "end" in json.loads(line):
                    break
                if time.monotonic() > until:
                    break
        while True:
            rec = self.get(execution_id)
            if rec["state"] in TERMINAL:
                return rec
            if time.monotonic() > until:
                raise TimeoutError(
                    f"execution {execution_id} still {rec['state']} after {deadline_s:g}s"
                )
            time.sleep(0.1)

    def wait_state(
        self, ids: Iterable[str], states: tuple[str, ...], deadline_s: float = 120.0
    ) -> dict[str, dict[str, Any]]:
        """Poll GET (every 0.2 s) until every execution is in one of `states`."""
        pending = set(ids)
        rows: dict[str, dict[str, Any]] = {}
        until = time.monotonic() + deadline_s
        while pending:
            for eid in sorted(pending):
                rec = self.get(eid)
                if rec["state"] in states:
                    rows[eid] = rec
                    pending.discard(eid)
                elif rec["state"] in TERMINAL:
                    raise RuntimeError(f"execution {eid} ended {rec['state']}: {rec.get('reason')}")
            if pending and time.monotonic() > until:
                raise TimeoutError(
                    f"{len(pending)} executions not in {states} after {deadline_s:g}s"
                )
            if pending:
                time.sleep(0.2)
        return rows

    def run(self, manifest: str, deadline_s: float = 120.0) -> Outcome:
        """Submit and wait for the end: one execution as a user's client sees it."""
        t0, t1, rec = self.submit(manifest)
        rec = self.wait_terminal(rec["id"], deadline_s)
        return Outcome(
            id=rec["id"],
            posted=t0,
            accepted=t1,
            seen_done=time.time(),
            state=rec["state"],
            started_at=_stamp(rec.get("started_at")),
            finished_at=_stamp(rec.get("finished_at")),
            reason=rec.get("reason"),
        )


# -- the bare Docker baseline ------------------------------------------------------------------

_MEM_UNITS = {
    "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
    "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
}  # fmt: skip


def memory_bytes(value: int | str) -> int:
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i|[kKMGT])?", str(value).strip())
    if not m:
        raise ValueError(f"memory {value!r}")
    return int(float(m.group(1)) * _MEM_UNITS.get(m.group(2) or "", 1))


def millicores(value: int | float | str) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text[:-1]) if text.endswith("m") else int(round(float(text) * 1000))


def bare_kwargs(manifest_text: str) -> dict[str, Any]:
    """The Docker SDK arguments aegis's DockerRuntime.start passes for this manifest
    (aegis_ray/adapters/docker/runtime.py, workflows/container.py): same image, command, env,
    limits and isolation. Only the name and labels differ (see BARE_LABEL)."""
    doc = yaml.safe_load(manifest_text)
    spec = doc["spec"]
    res = spec.get("security", {}).get("resources", {})
    task = spec.get("task", {})
    mem = memory_bytes(res.get("memory", "256Mi"))
    net = spec.get("security", {}).get("network", {}).get("mode", "none")
    env = {
        "HOME": "/tmp",
        **{k: str(v) for k, v in (spec.get("env") or {}).items()},
        "AEGIS_AGENT_NAME": doc["metadata"]["name"],
        "AEGIS_TASK_INSTRUCTION": task.get("instruction") or "",
        "AEGIS_TASK_INPUT": json.dumps(task.get("input")),
        "AEGIS_ATTEMPT": "1",
    }
    return dict(
        image=spec["runtime"]["image"],
        command=list(spec["runtime"].get("command") or []) or None,
        environment=env,
        nano_cpus=millicores(res.get("cpu", 500)) * 1_000_000,
        mem_limit=mem,
        memswap_limit=mem,
        pids_limit=256,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        privileged=False,
        user="65534:65534",
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=64m,mode=1777"},
        network_mode="bridge" if net == "allow" else "none",
        init=True,
        auto_remove=False,
        log_config={"type": "json-file", "config": {"max-size": "20m", "max-file": "3"}},
    )


@dataclass
class BareRun:
    started: float  # before containers.run
    running: float  # containers.run(detach) returned
    exited: float  # wait() returned
    removed: float  # remove() returned
    exit_code: int
    name: str = ""


class Bare:
    """The same container through the Docker SDK: run(detach) -> wait() -> remove()."""

    def __init__(self, manifest_text: str, *, pool: int = 64) -> None:
        import docker  # only the benchmarks that measure bare need the SDK

        self.client = docker.from_env(timeout=60, max_pool_size=pool)
        self.kwargs = bare_kwargs(manifest_text)

    def run(self) -> BareRun:
        eid = str(uuid.uuid4())
        env = {**self.kwargs["environment"], "AEGIS_EXECUTION_ID": eid}
        kwargs = {**self.kwargs, "environment": env}
        t0 = time.time()
        name = f"aegis-bench-bare-{eid[:12]}"
        c = self.client.containers.run(detach=True, name=name, labels={BARE_LABEL: "1"}, **kwargs)
        t1 = time.time()
        try:
            status = c.wait(timeout=120)
            t2 = time.time()
        finally:
            c.remove(force=True)
        return BareRun(t0, t1, t2, time.time(), int(status.get("StatusCode", -1)), name)

    def engine_events(self, since: float, until: float) -> dict[str, dict[str, float]]:
        """Docker's container events between two times: {container name: {action: time}}
        (the first time of each action: create, start, die, destroy)."""
        out: dict[str, dict[str, float]] = {}
        stream = self.client.events(
            since=int(since), until=int(until) + 1, filters={"type": "container"}, decode=True
        )
        for ev in stream:
            name = (ev.get("Actor") or {}).get("Attributes", {}).get("name", "")
            action = str(ev.get("Action") or ev.get("status") or "")
            if action in ("create", "start", "die", "destroy") and "timeNano" in ev:
                out.setdefault(name, {}).setdefault(action, ev["timeNano"] / 1e9)
        return out

    def cleanup(self) -> None:
        """Remove any bare container left behind (an interrupted run)."""
        for c in self.client.containers.list(all=True, filters={"label": BARE_LABEL}):
            with contextlib.suppress(Exception):
                c.remove(force=True)


def closed_loop(n: int, concurrency: int, one: Callable[[], Any]) -> tuple[list[Any], float, float]:
    """`concurrency` workers each repeat `one()` until n calls have started; (results, start,
    end) with start/end the wall clock around the whole loop."""
    lock = threading.Lock()
    left = [n]
    results: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                if left[0] <= 0 or errors:
                    return
                left[0] -= 1
            try:
                r = one()
            except BaseException as err:  # reported after the loop
                with lock:
                    errors.append(err)
                return
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1 = time.time()
    if errors:
        raise errors[0]
    return results, t0, t1


# -- processes ---------------------------------------------------------------------------


@dataclass
class Proc:
    pid: int
    ppid: int
    sid: int
    comm: str
    args: list[str]
    start: int  # start time in ticks since boot: (pid, start) names one process
    own: int  # utime + stime, ticks
    children: int  # cutime + cstime: its reaped children, ticks

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start)

    @property
    def cmd(self) -> str:
        return " ".join(self.args)


def _read_proc(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as fb:
            raw = fb.read()
    except OSError:
        return None
    lp, rp = stat.index("("), stat.rindex(")")
    rest = stat[rp + 2 :].split()
    args = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    return Proc(
        pid=pid,
        ppid=int(rest[1]),
        sid=int(rest[3]),
        comm=stat[lp + 1 : rp],
        args=args,
        start=int(rest[19]),
        own=int(rest[11]) + int(rest[12]),
        children=int(rest[13]) + int(rest[14]),
    )


def processes() -> dict[int, Proc]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            p = _read_proc(int(name))
            if p is not None:
                out[p.pid] = p
    return out


def host_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat: busy = total - idle - iowait."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return total - fields[3] - fields[4], total


# -- which component a process belongs to -------------------------------------------------------

RAY_KINDS: list[tuple[str, str]] = [  # (substring of the command line, component), first wins
    ("ray::NodeAgentActor", "node agent (NodeAgentActor)"),
    ("ray::ProxyActor", "Serve proxy"),
    ("ray::ServeController", "Serve controller"),
    ("gcs_server", "Ray GCS"),
    ("raylet/raylet", "Ray raylet"),
    ("ray::DashboardAgent", "Ray dashboard agent"),
    ("dashboard/agent.py", "Ray dashboard agent"),
    ("ray::RuntimeEnvAgent", "Ray runtime env agent"),
    ("runtime_env/agent/main.py", "Ray runtime env agent"),
    ("dashboard/dashboard.py", "Ray dashboard"),
    ("ray-dashboard-", "Ray dashboard"),
    ("log_monitor.py", "Ray log monitor"),
    ("autoscaler/_private/monitor.py", "Ray autoscaler monitor"),
    ("ray.util.client.server", "Ray client server"),
]
DOCKER = ("dockerd", "containerd", "containerd-shim", "containers (agent processes)")
REAPED = "exited shims + containers (reaped by PID 1)"
CLIENT = "this benchmark client"
OTHER = "other processes (not this stack)"
KERNEL = "kernel threads"


def _arg(args: list[str], flag: str) -> str | None:
    """The value after `flag` in an argument list."""
    with contextlib.suppress(ValueError, IndexError):
        return args[args.index(flag) + 1]
    return None


@dataclass
class Classifier:
    """Names the component of each process (see the module docstring for what is ours)."""

    stack: Stack
    procs: dict[int, Proc]
    # The containers that count as ours (full ids); None: every container on the engine.
    containers: frozenset[str] | None = None
    nodes: dict[int, str] = field(default_factory=dict)  # Ray session id -> node label
    postmaster: int | None = None

    def __post_init__(self) -> None:
        port = str(self.stack.ray_port)
        for p in self.procs.values():
            cmd = p.cmd
            if p.comm == "raylet" and re.search(rf"--gcs-address=\S+:{port}\b", cmd):
                m = re.search(r"--labels=(\{.*?\})", cmd)
                labels = {}
                if m:
                    with contextlib.suppress(ValueError):
                        labels = json.loads(m.group(1))
                role = labels.get("aegis/role", "ray")
                self.nodes[p.sid] = f"{role} {labels.get('aegis/node-id', p.sid)}"
            elif p.comm == "gcs_server" and f"--gcs_server_port={port}" in cmd:
                self.nodes.setdefault(p.sid, "head")
            elif (
                p.comm == "postgres"
                and "-D" in p.args
                and _arg(p.args, "-p") == str(self.stack.postgres_port)
            ):
                self.postmaster = p.pid

    @property
    def multi_node(self) -> bool:
        return len(set(self.nodes.values())) > 1

    def node_of(self, p: Proc) -> str | None:
        return self.nodes.get(p.sid)

    def _ancestors(self, p: Proc) -> Iterator[Proc]:
        seen = 0
        while p.ppid in self.procs and seen < 64:
            p = self.procs[p.ppid]
            seen += 1
            yield p

    def _our_shim(self, shim: Proc) -> bool:
        return self.containers is None or _arg(shim.args, "-id") in self.containers

    def component(self, p: Proc) -> str:
        me = os.getpid()
        if p.pid == me or any(a.pid == me for a in self._ancestors(p)):
            return CLIENT
        if p.sid in self.nodes:
            kind = "Ray workers (other)"
            cmd = p.cmd
            if m := re.search(r"ray::ServeReplica:[^:\s]*:([^.\s]+)", cmd):
                kind = f"Serve replica {m.group(1)}"
            elif any("dashboard/dashboard.py" in a.cmd for a in self._ancestors(p)):
                kind = "Ray dashboard"  # its module processes, forkserver, resource tracker
            else:
                for needle, name in RAY_KINDS:
                    if needle in cmd:
                        kind = name
                        break
            return f"{self.nodes[p.sid]}: {kind}" if self.multi_node else kind
        if self.postmaster is not None and self.postmaster in (p.pid, p.ppid):
            return "PostgreSQL"
        if p.comm == "temporal" and _arg(p.args, "--port") == str(self.stack.temporal_port):
            return "Temporal server"
        if p.comm in ("dockerd", "containerd"):
            return p.comm
        if p.comm.startswith("containerd-shim"):
            return "containerd-shim" if self._our_shim(p) else OTHER
        for a in self._ancestors(p):
            if a.comm.startswith("containerd-shim"):
                return "containers (agent processes)" if self._our_shim(a) else OTHER
        if p.pid == 2 or p.ppid == 2:
            return KERNEL
        return OTHER


def is_stack(component: str) -> bool:
    """Part of this stack or of Docker: not another process, a kernel thread or the client."""
    return component not in (OTHER, KERNEL, CLIENT)


# -- CPU over a window -----------------------------------------------------------------------


@dataclass
class CpuWindow:
    seconds: float
    host_busy_s: float  # all CPUs' busy time from /proc/stat
    by_component: dict[str, float]  # CPU-s per component, reaped children included
    count: dict[str, int]

    @property
    def attributed_s(self) -> float:
        return sum(self.by_component.values())

    @property
    def stack_s(self) -> float:
        """CPU-s of this stack and Docker (see is_stack)."""
        return sum(v for k, v in self.by_component.items() if is_stack(k))


class CpuMeter:
    """Snapshot /proc at start and stop; CPU per component in between.

    A process alive at both ends counts its own and its reaped children's CPU in between; one
    born in between counts all of it. A process that exits is counted in whoever reaps it: the
    raylet for Ray workers, a shim for its container's processes, PID 1 for the shims (PID 1's
    children's CPU is reported as REAPED; its own CPU is "other").
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._t0 = 0.0
        self._busy0 = 0
        self._procs0: dict[int, Proc] = {}

    def start(self) -> None:
        self._procs0 = processes()
        self._busy0, _ = host_busy_ticks()
        self._t0 = time.monotonic()

    def stop(self, containers: frozenset[str] | None = None) -> CpuWindow:
        """The window since start(); `containers`: only these count as ours (default: all)."""
        busy1, _ = host_busy_ticks()
        t1 = time.monotonic()
        procs1 = processes()
        # Classify on the union: a process that was there at the start but not at the end
        # still names its component (only its CPU after the start snapshot is lost).
        everyone = {**self._procs0, **procs1}
        cls = Classifier(self.stack, everyone, containers)
        before = {p.key: p for p in self._procs0.values()}
        # A process there at the start that has ended was reaped by the first of its ancestors
        # still alive (PID 1 for orphans): its whole life's CPU landed in that one's children
        # time, but only what it spent after the start belongs to this window. (If the guess
        # of the reaper is wrong, the reaper's children time is never taken below zero.)
        alive = {p.key: p for p in procs1.values()}
        init = procs1.get(1)
        earlier: dict[tuple[int, int], int] = defaultdict(int)  # reaper -> ticks to take off
        for d in self._procs0.values():
            if d.key in alive or d.pid in (1, 2) or d.ppid == 2:  # kernel threads: no reaper
                continue
            reaper = self._procs0.get(d.ppid)
            hops = 0
            while reaper is not None and reaper.key not in alive and hops < 64:
                reaper = self._procs0.get(reaper.ppid)
                hops += 1
            if reaper is None or reaper.key not in alive:
                reaper = init
            if reaper is not None:
                earlier[reaper.key] += d.own + d.children
        by: dict[str, float] = defaultdict(float)
        count: dict[str, int] = defaultdict(int)
        for p in procs1.values():
            old = before.get(p.key)
            own = p.own - (old.own if old else 0)
            kids = max(0, p.children - (old.children if old else 0) - earlier.get(p.key, 0))
            comp = cls.component(p)
            count[comp] += 1
            if p.pid == 1:
                by[OTHER] += own / TICK
                by[REAPED] += kids / TICK
            else:
                by[comp] += (own + kids) / TICK
        return CpuWindow(
            seconds=t1 - self._t0,
            host_busy_s=(busy1 - self._busy0) / TICK,
            by_component=dict(by),
            count=dict(count),
        )


ORDER = [
    "node agent (NodeAgentActor)",
    "Serve replica",
    "Serve proxy",
    "Serve controller",
    "Ray raylet",
    "Ray GCS",
    "Ray dashboard",
    "Ray dashboard agent",
    "Ray runtime env agent",
    "Ray log monitor",
    "Ray autoscaler monitor",
    "Ray client server",
    "Ray workers (other)",
    "Temporal server",
    "PostgreSQL",
    "dockerd",
    "containerd",
    "containerd-shim",
    "containers (agent processes)",
    REAPED,
    CLIENT,
    KERNEL,
    OTHER,
]


def sort_key(component: str) -> tuple[str, int, str]:
    node, _, kind = component.rpartition(": ")
    for i, prefix in enumerate(ORDER):
        if kind.startswith(prefix):
            return (node, i, kind)
    return (node, len(ORDER), kind)


def cpu_table(columns: dict[str, tuple[CpuWindow, int]]) -> str:
    """CPU-s per execution for each component, one column per window: {name: (window, n)}."""
    comps = sorted({c for w, _ in columns.values() for c in w.by_component}, key=sort_key)
    rows = []
    for comp in comps:
        vals = [w.by_component.get(comp, 0.0) / n for w, n in columns.values()]
        if all(v < 0.0005 for v in vals):
            continue
        rows.append([comp, *(f"{v:.3f}" for v in vals)])
    rows.append(["sum of processes", *(f"{w.attributed_s / n:.3f}" for w, n in columns.values())])
    rows.append(
        [
            "host busy (/proc/stat)",
            *(f"{w.host_busy_s / n:.3f}" for w, n in columns.values()),
        ]
    )
    rows.append(
        [
            "host busy - other processes",
            *(
                f"{(w.host_busy_s - w.by_component.get(OTHER, 0.0)) / n:.3f}"
                for w, n in columns.values()
            ),
        ]
    )
    return table(rows, ["CPU-s per execution", *columns.keys()])


# -- memory ---------------------------------------------------------------------------------


@dataclass
class Mem:
    pss: int  # kB
    rss: int
    uss: int


def smaps(pid: int) -> Mem | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except OSError:
        return None
    vals = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":"):
            vals[parts[0][:-1]] = int(parts[1])
    return Mem(
        pss=vals.get("Pss", 0),
        rss=vals.get("Rss", 0),
        uss=vals.get("Private_Clean", 0) + vals.get("Private_Dirty", 0),
    )


@dataclass
class MemSnapshot:
    by_component: dict[str, Mem]
    count: dict[str, int]
    host_pss_kb: int  # every process on the host

    def total(self, components: Iterable[str]) -> int:
        return sum(self.by_component[c].pss for c in components if c in self.by_component)


def memory_snapshot(stack: Stack, containers: frozenset[str] | None = None) -> MemSnapshot:
    """PSS per component now; `containers`: only these count as ours (default: all)."""
    procs = processes()
    cls = Classifier(stack, procs, containers)
    by: dict[str, Mem] = {}
    count: dict[str, int] = defaultdict(int)
    host = 0
    for p in procs.values():
        m = smaps(p.pid)
        if m is None:
            continue
        host += m.pss
        comp = cls.component(p)
        acc = by.setdefault(comp, Mem(0, 0, 0))
        acc.pss += m.pss
        acc.rss += m.rss
        acc.uss += m.uss
        count[comp] += 1
    return MemSnapshot(by, dict(count), host)
