#!/usr/bin/env python3
"""Benchmark: memory (PSS) and CPU of the idle stack, and what each running agent adds, vs bare.

Command (a running stack, `aegis up`; under the e2e lock on a shared machine):

    flock /tmp/aegis-e2e.lock python3 scripts/bench_memory.py

1. Idle stack: PSS per component, the sum of Pss in /proc/PID/smaps_rollup over the stack's
   processes (Ray, Serve, the node agent, Temporal, PostgreSQL; Docker's dockerd and containerd
   listed apart), and the host's busy CPU over an idle window (--window-s).
2. Bare Docker: --agents sleeping containers (`sh -c "sleep N"`, hello's image and limits, the
   Docker SDK with aegis's options); once all run and --settle-s have passed: PSS added per
   container (every process of the stack and Docker, containerd-shims and the containers'
   processes included; after minus before, / agents), then CPU per running container over the
   same window (host busy CPU minus the idle window's, / agents). Then they are removed.
3. aegis: the same with --agents executions of a sleeper manifest (hello's, with command
   `sh -c "sleep N"`, written to a temporary file) submitted over REST; measured once all are
   RUNNING and --settle-s have passed; then cancelled.

Targets (issue 10): idle stack <= 1.2 GiB PSS (was 1.8 GiB); <= 8 MiB PSS per running agent
(was 67 MiB); ~0 CPU per running agent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml
from benchlib import (
    BARE_LABEL,
    DOCKER,
    HELLO,
    REAPED,
    Api,
    Bare,
    CpuMeter,
    CpuWindow,
    MemSnapshot,
    Stack,
    is_stack,
    memory_snapshot,
    sort_key,
    table,
)

MiB = 1024.0  # smaps values are kB
IDLE_TARGET_MIB = 1.2 * 1024
AGENT_TARGET_MIB = 8.0
DOCKER_DAEMONS = ("dockerd", "containerd")
EXECUTION_LABEL = "ai.100monkeys.aegis/execution-id"
NONE: frozenset[str] = frozenset()  # no container counts as ours


def group(component: str) -> str:
    kind = component.rpartition(": ")[2]
    if kind.startswith("Serve") or kind.startswith("node agent"):
        return "aegis on Ray (Serve, node agent)"
    if kind.startswith("Ray"):
        return "Ray"
    if kind in DOCKER_DAEMONS:
        return "Docker daemons"
    return kind


def idle_report(snap: MemSnapshot) -> float:
    comps = sorted((c for c in snap.by_component if is_stack(c)), key=sort_key)
    rows = []
    subtotal: dict[str, float] = {}
    for c in comps:
        m = snap.by_component[c]
        mib = [f"{v / MiB:.1f}" for v in (m.pss, m.rss, m.uss)]
        rows.append([c, str(snap.count[c]), *mib])
        subtotal[group(c)] = subtotal.get(group(c), 0.0) + m.pss / MiB
    stack = sum(v for k, v in subtotal.items() if k != "Docker daemons")
    docker = subtotal.get("Docker daemons", 0.0)
    procs = sum(snap.count[c] for c in comps if c not in DOCKER_DAEMONS)
    rows.append(["", "", "", "", ""])
    for k, v in subtotal.items():
        rows.append([f"subtotal {k}", "", f"{v:.1f}", "", ""])
    rows.append(["total: the stack without Docker", str(procs), f"{stack:.1f}", "", ""])
    rows.append(["total with dockerd + containerd", "", f"{stack + docker:.1f}", "", ""])
    print(table(rows, ["idle component", "procs", "PSS MiB", "RSS MiB", "USS MiB"]))
    return stack + docker


def added_report(
    label: str,
    before: MemSnapshot,
    after: MemSnapshot,
    n: int,
    cpu: CpuWindow,
    idle: CpuWindow,
    docker_only: bool,
) -> tuple[float, float, float]:
    """Per running agent, PSS and CPU added per component and in total: for aegis every
    component of the stack and Docker; for bare Docker only Docker's (the stack plays no part
    there, its own fluctuations are noise)."""
    comps = sorted(
        {c for c in [*before.by_component, *after.by_component, *cpu.by_component] if is_stack(c)},
        key=sort_key,
    )
    rows = []
    mem_total = cpu_total = 0.0
    for c in comps:
        b, a = before.by_component.get(c), after.by_component.get(c)
        dm = ((a.pss if a else 0) - (b.pss if b else 0)) / MiB / n
        dc = (
            cpu.by_component.get(c, 0.0) / cpu.seconds
            - idle.by_component.get(c, 0.0) / idle.seconds
        ) / n
        if c in DOCKER or c == REAPED or not docker_only:
            mem_total += dm
            cpu_total += dc
        if abs(dm) >= 0.01 or abs(dc) >= 0.0005:
            procs = f"{before.count.get(c, 0)} -> {after.count.get(c, 0)}"
            rows.append([c, procs, f"{dm:+.2f}", f"{dc:+.4f}"])
    cpu_host = (cpu.host_busy_s / cpu.seconds - idle.host_busy_s / idle.seconds) / n
    what = "Docker (daemons, shims, containers)" if docker_only else "stack + Docker + containers"
    rows.append([f"total: {what}", "", f"{mem_total:+.2f}", f"{cpu_total:+.4f}"])
    rows.append(["host busy CPU (every process)", "", "", f"{cpu_host:+.4f}"])
    print(f"== {label}: {n} running; added per running agent, vs idle ==")
    print(table(rows, ["component", "procs", "PSS MiB", "CPU cores"]))
    return mem_total, cpu_total, cpu_host


def aegis_containers(bare: Bare, ids: list[str]) -> frozenset[str]:
    """The containers of these executions, found by aegis's execution-id label."""
    found = bare.client.containers.list(filters={"label": EXECUTION_LABEL})
    wanted = set(ids)
    return frozenset(c.id for c in found if c.labels.get(EXECUTION_LABEL) in wanted)


def sleeper_manifest(sleep_s: int) -> str:
    doc = yaml.safe_load(HELLO.read_text())
    doc["metadata"]["name"] = "sleeper-agent"
    doc["spec"]["runtime"]["command"] = ["sh", "-c", f"sleep {sleep_s}"]
    doc["spec"]["execution"]["timeout"] = f"{sleep_s + 60}s"
    return yaml.safe_dump(doc, sort_keys=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=8, help="sleeping agents (8)")
    ap.add_argument("--settle-s", type=float, default=5.0, help="after all run (5 s)")
    ap.add_argument("--window-s", type=float, default=20.0, help="CPU windows (20 s)")
    args = ap.parse_args()
    if not 1 <= args.agents <= 64 or not 0 <= args.settle_s <= 60 or not 1 <= args.window_s <= 120:
        sys.exit("--agents 1..64, --settle-s 0..60, --window-s 1..120")
    n = args.agents
    sleep_s = int(max(60, args.settle_s + args.window_s + 40))
    stack = Stack.from_env()
    api = Api(stack)
    api.health()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="sleeper-", delete=False) as f:
        f.write(sleeper_manifest(sleep_s))
        manifest = Path(f.name)
    text = manifest.read_text()
    bare = Bare(text)
    bare.cleanup()
    meter = CpuMeter(stack)

    print(f"API {stack.api_url}; sleeper manifest {manifest} (sh -c 'sleep {sleep_s}')\n")
    idle_total = idle_report(memory_snapshot(stack, NONE))
    meter.start()
    time.sleep(args.window_s)
    idle = meter.stop(NONE)
    print(
        f"\nidle CPU over {idle.seconds:.0f} s: host {idle.host_busy_s / idle.seconds:.3f} cores, "
        f"this stack + Docker {idle.stack_s / idle.seconds:.3f} cores"
    )
    top = sorted(
        ((v / idle.seconds, k) for k, v in idle.by_component.items() if is_stack(k)), reverse=True
    )[:6]
    print("  largest: " + ", ".join(f"{k} {v:.3f}" for v, k in top) + "\n")

    # -- bare Docker: the same sleeping containers through the SDK
    before = memory_snapshot(stack, NONE)
    kwargs = {**bare.kwargs, "labels": {BARE_LABEL: "1"}}
    containers = []
    try:
        for _ in range(n):
            containers.append(bare.client.containers.run(detach=True, **kwargs))
        cids = frozenset(c.id for c in containers)
        time.sleep(args.settle_s)
        after = memory_snapshot(stack, cids)
        meter.start()
        time.sleep(args.window_s)
        cpu = meter.stop(cids)
        for c in containers:
            c.reload()
        running = sum(1 for c in containers if c.status == "running")
    finally:
        for c in containers:
            c.remove(force=True)
    if running != n:
        print(f"warning: only {running} of {n} bare containers still running at the end")
    b_mem, b_cpu, b_host = added_report("bare Docker", before, after, n, cpu, idle, True)
    print()
    time.sleep(3)

    # -- aegis: the same through the cluster
    before = memory_snapshot(stack, NONE)
    ids: list[str] = []
    try:
        t0 = time.time()
        for _ in range(n):
            ids.append(api.submit(text)[2]["id"])
        api.wait_state(ids, ("RUNNING",), deadline_s=120)
        t_all = time.time() - t0
        time.sleep(args.settle_s)
        cids = aegis_containers(bare, ids)
        after = memory_snapshot(stack, cids)
        meter.start()
        time.sleep(args.window_s)
        cpu = meter.stop(cids)
        states = [api.get(i)["state"] for i in ids]
    finally:
        t1 = time.time()
        for i in ids:
            api.cancel(i)
        ends = [api.wait_terminal(i, deadline_s=60)["state"] for i in ids]
        t_cancel = time.time() - t1
    if states.count("RUNNING") != n:
        print(f"warning: states at the end of the window: {states}")
    if len(cids) != n:
        print(f"warning: {len(cids)} containers found for the {n} executions")
    print(f"all {n} RUNNING {t_all:.1f} s after the first POST")
    a_mem, a_cpu, a_host = added_report("aegis", before, after, n, cpu, idle, False)
    print(f"cancelled: {sorted(set(ends))}, all terminal {t_cancel:.1f} s after the first cancel")
    print()

    rows = [
        ["idle stack PSS MiB (with dockerd+containerd)", f"{idle_total:.0f}", "",
         "", f"<= {IDLE_TARGET_MIB:.0f}", "ok" if idle_total <= IDLE_TARGET_MIB else "MISSED"],
        ["PSS added per running agent MiB", f"{a_mem:.2f}", f"{b_mem:.2f}",
         f"{a_mem / b_mem:.2f}x" if b_mem > 0 else "n/a", f"<= {AGENT_TARGET_MIB:.0f}",
         "ok" if a_mem <= AGENT_TARGET_MIB else "MISSED"],
        ["CPU per running agent (stack + Docker), cores", f"{a_cpu:.4f}", f"{b_cpu:.4f}", "",
         "~0", ""],
        ["CPU per running agent (host busy), cores", f"{a_host:.4f}", f"{b_host:.4f}", "",
         "~0", ""],
    ]  # fmt: skip
    print(table(rows, ["summary", "aegis", "bare Docker", "ratio", "target", ""]))
    manifest.unlink()
    api.close()


if __name__ == "__main__":
    main()
