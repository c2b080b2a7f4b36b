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
    HELLO,
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


def group(component: str) -> str:
    kind = component.rpartition(": ")[2]
    if kind.startswith("Serve") or kind.startswith("node agent"):
        return "aegis control plane on Ray (Serve, node agent)"
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
        rows.append(
            [
                c,
                str(snap.count[c]),
                f"{m.pss / MiB:.1f}",
                f"{m.rss / MiB:.1f}",
                f"{m.uss / MiB:.1f}",
            ]
        )
        subtotal[group(c)] = subtotal.get(group(c), 0.0) + m.pss / MiB
    stack = sum(v for k, v in subtotal.items() if k != "Docker daemons")
    docker = subtotal.get("Docker daemons", 0.0)
    rows.append(["", "", "", "", ""])
    for k, v in subtotal.items():
        rows.append([f"subtotal {k}", "", f"{v:.1f}", "", ""])
    rows.append(
        [
            "total: the stack without Docker",
            str(sum(snap.count[c] for c in comps if c not in DOCKER_DAEMONS)),
            f"{stack:.1f}",
            "",
            "",
        ]
    )
    rows.append(["total with dockerd + containerd", "", f"{stack + docker:.1f}", "", ""])
    print(table(rows, ["idle component", "procs", "PSS MiB", "RSS MiB", "USS MiB"]))
    return stack + docker


def added_report(
    label: str, before: MemSnapshot, after: MemSnapshot, n: int, cpu: CpuWindow, idle: CpuWindow
) -> tuple[float, float, float]:
    comps = sorted(
        {c for c in [*before.by_component, *after.by_component] if is_stack(c)}, key=sort_key
    )
    rows = []
    for c in comps:
        b = before.by_component.get(c)
        a = after.by_component.get(c)
        pb, pa = (b.pss if b else 0) / MiB, (a.pss if a else 0) / MiB
        cb = (
            cpu.by_component.get(c, 0.0) / cpu.seconds
            - idle.by_component.get(c, 0.0) / idle.seconds
        )
        if abs(pa - pb) < 0.05 and abs(cb) < 0.0005:
            continue
        rows.append(
            [
                c,
                f"{before.count.get(c, 0)} -> {after.count.get(c, 0)}",
                f"{(pa - pb) / n:+.2f}",
                f"{cb / n:+.4f}",
            ]
        )
    total = (after.total(comps) - before.total(comps)) / MiB / n
    host = (after.host_pss_kb - before.host_pss_kb) / MiB / n
    cpu_host = (cpu.host_busy_s / cpu.seconds - idle.host_busy_s / idle.seconds) / n
    cpu_stack = (cpu.stack_s / cpu.seconds - idle.stack_s / idle.seconds) / n
    rows.append(
        ["total: stack + Docker + shims + containers", "", f"{total:+.2f}", f"{cpu_stack:+.4f}"]
    )
    rows.append(["host: every process / host busy", "", f"{host:+.2f}", f"{cpu_host:+.4f}"])
    print(f"== {label}: {n} running, per running agent ==")
    print(table(rows, ["component", "procs", "PSS MiB", "CPU cores"]))
    return total, cpu_stack, cpu_host


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
    idle_snap = memory_snapshot(stack)
    idle_total = idle_report(idle_snap)
    meter.start()
    time.sleep(args.window_s)
    idle = meter.stop()
    print(
        f"\nidle CPU over {idle.seconds:.0f} s: host {idle.host_busy_s / idle.seconds:.3f} cores, "
        f"this stack + Docker {idle.stack_s / idle.seconds:.3f} cores"
    )
    top = sorted(
        ((v / idle.seconds, k) for k, v in idle.by_component.items() if is_stack(k)), reverse=True
    )[:6]
    print("  largest: " + ", ".join(f"{k} {v:.3f}" for v, k in top))
    print()

    # -- bare Docker: the same sleeping containers through the SDK
    before = memory_snapshot(stack)
    kwargs = {**bare.kwargs, "labels": {BARE_LABEL: "1"}}
    containers = [bare.client.containers.run(detach=True, **kwargs) for _ in range(n)]
    try:
        time.sleep(args.settle_s)
        after = memory_snapshot(stack)
        meter.start()
        time.sleep(args.window_s)
        cpu = meter.stop()
        for c in containers:
            c.reload()
        running = sum(1 for c in containers if c.status == "running")
    finally:
        for c in containers:
            c.remove(force=True)
    if running != n:
        print(f"warning: only {running} of {n} bare containers still running at the end")
    b_mem, b_cpu, b_host = added_report("bare Docker", before, after, n, cpu, idle)
    print()
    time.sleep(3)

    # -- aegis: the same through the cluster
    before = memory_snapshot(stack)
    ids: list[str] = []
    try:
        t0 = time.time()
        for _ in range(n):
            ids.append(api.submit(text)[2]["id"])
        api.wait_state(ids, ("RUNNING",), deadline_s=120)
        t_all = time.time() - t0
        time.sleep(args.settle_s)
        after = memory_snapshot(stack)
        meter.start()
        time.sleep(args.window_s)
        cpu = meter.stop()
        states = [api.get(i)["state"] for i in ids]
    finally:
        t1 = time.time()
        for i in ids:
            api.cancel(i)
        ends = [api.wait_terminal(i, deadline_s=60)["state"] for i in ids]
        t_cancel = time.time() - t1
    if states.count("RUNNING") != n:
        print(f"warning: states at the end of the window: {states}")
    print(f"all {n} RUNNING {t_all:.1f} s after the first POST")
    a_mem, a_cpu, a_host = added_report("aegis", before, after, n, cpu, idle)
    print(f"cancelled: {sorted(set(ends))} within {t_cancel:.1f} s")
    print()

    rows = [
        ["idle stack PSS MiB (with dockerd+containerd)", f"{idle_total:.0f}", "",
         "", f"<= {IDLE_TARGET_MIB:.0f}", "ok" if idle_total <= IDLE_TARGET_MIB else "MISSED"],
        ["PSS added per running agent MiB", f"{a_mem:.2f}", f"{b_mem:.2f}",
         f"{a_mem / b_mem:.2f}x" if b_mem > 0 else "n/a", f"<= {AGENT_TARGET_MIB:.0f}",
         "ok" if a_mem <= AGENT_TARGET_MIB else "MISSED"],
        ["CPU per running agent, stack+Docker, cores", f"{a_cpu:.4f}", f"{b_cpu:.4f}", "",
         "~0", ""],
        ["CPU per running agent, host busy, cores", f"{a_host:.4f}", f"{b_host:.4f}", "",
         "~0", ""],
    ]  # fmt: skip
    print(table(rows, ["summary", "aegis", "bare Docker", "ratio", "target", ""]))
    manifest.unlink()
    api.close()


if __name__ == "__main__":
    main()
