#!/usr/bin/env python3
"""Benchmark: closed-loop throughput of trivial agents vs bare Docker, and where the CPU goes.

Command (a running stack, `aegis up`; under the e2e lock on a shared machine):

    flock /tmp/aegis-e2e.lock python3 scripts/bench_throughput.py -n 40 -c 4 16

For each concurrency C: C workers each repeat one run until n have been done, first with bare
Docker, then with aegis (after a warm-up of C runs of each).
  * bare: the Docker SDK with aegis's container options (see benchlib.bare_kwargs):
    `containers.run(detach)` -> `wait()` -> `remove()`; latency = run() called -> wait() returned;
  * aegis: POST /v1/executions (the hello agent), then the execution's event stream until it
    ends; latency = POST sent -> the row's finished_at.
Throughput = n / wall time of the loop (first start -> last run done, client side).

CPU: host busy time from /proc/stat over each loop, and per process utime+stime (+ the
cutime/cstime of children it reaped) from /proc/PID/stat at both ends, grouped into components:
the node agent, Serve replicas by deployment, Serve proxy and controller, raylet, GCS, dashboard,
log monitor, ..., Temporal, PostgreSQL, dockerd, containerd, containerd-shims (live ones; exited
ones and their containers are reaped by PID 1 and show as such), this client. Processes that do
not belong to this stack (another aegis stack on the host, shells) are "other processes"; the
last row takes them out of the host figure. Printed per execution, aegis next to bare.

On a cluster with edge nodes (scripts/bench_two_edges.sh) it also prints the edges' CPU per
execution (their raylets' process trees: raylet, node agent, agents, log monitor; plus dockerd,
containerd, shims and containers) next to bare Docker's CPU per run (the same Docker components
plus this client's SDK calls).

Targets (issue 10): throughput >= 0.8x bare on a hybrid node; edges' CPU <= 1.2x bare.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchlib import (
    CLIENT,
    DOCKER,
    HELLO,
    OTHER,
    REAPED,
    Api,
    Bare,
    CpuMeter,
    CpuWindow,
    Outcome,
    Stack,
    closed_loop,
    cpu_table,
    pct,
    ratio,
    table,
)

TARGET_THROUGHPUT = 0.8
TARGET_EDGE_CPU = 1.2
SETTLE_S = 3.0  # between loops: the previous loop's teardown is not counted in the next one


def edge_cpu(w: CpuWindow, bare: bool) -> float:
    """CPU-s an edge spends: its nodes' processes plus Docker's (bare: Docker's plus the SDK
    client's, i.e. this process)."""
    docker = sum(v for k, v in w.by_component.items() if k in DOCKER or k == REAPED)
    if bare:
        return docker + w.by_component.get(CLIENT, 0.0)
    nodes = sum(v for k, v in w.by_component.items() if k.startswith("edge "))
    return docker + nodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=40, help="runs per loop (default 40)")
    ap.add_argument("-c", type=int, nargs="+", default=[4, 16], help="concurrencies (4 16)")
    ap.add_argument("--manifest", type=Path, default=HELLO, help="agent manifest (hello)")
    ap.add_argument("--idle-s", type=float, default=10.0, help="idle window first (10 s)")
    args = ap.parse_args()
    if not 1 <= args.n <= 1000 or not all(1 <= c <= 64 for c in args.c):
        sys.exit("-n must be 1..1000 and -c 1..64")
    stack = Stack.from_env()
    text = args.manifest.read_text()
    api = Api(stack, connections=2 * max(args.c) + 4)
    bare = Bare(text, pool=2 * max(args.c) + 4)
    bare.cleanup()
    api.health()
    meter = CpuMeter(stack)

    meter.start()
    time.sleep(max(0.0, min(args.idle_s, 120.0)))
    idle = meter.stop()
    ours_idle = idle.stack_s
    print(
        f"idle window {idle.seconds:.0f} s: host busy {idle.host_busy_s / idle.seconds:.2f} cores, "
        f"of which this stack + Docker {ours_idle / idle.seconds:.2f}, "
        f"other processes {idle.by_component.get(OTHER, 0.0) / idle.seconds:.2f}"
    )
    print(f"API {stack.api_url}; manifest {args.manifest.name}; n={args.n} per loop\n")

    def ours_once() -> Outcome:
        o = api.run(text)
        if o.state != "SUCCEEDED":
            raise RuntimeError(f"execution {o.id} ended {o.state}: {o.reason}")
        return o

    for c in args.c:
        closed_loop(c, c, bare.run)  # warm-up
        closed_loop(c, c, ours_once)
        time.sleep(SETTLE_S)

        meter.start()
        b_runs, b0, b1 = closed_loop(args.n, c, bare.run)
        wb = meter.stop()
        time.sleep(SETTLE_S)
        meter.start()
        o_runs, o0, o1 = closed_loop(args.n, c, ours_once)
        wo = meter.stop()
        time.sleep(SETTLE_S)

        b_rate, o_rate = args.n / (b1 - b0), args.n / (o1 - o0)
        b_lat = [(r.exited - r.started) * 1000 for r in b_runs]
        o_lat = [(o.to_done or 0.0) * 1000 for o in o_runs]
        o_run = [(o.to_running or 0.0) * 1000 for o in o_runs]
        o_cpu, b_cpu = wo.host_busy_s / args.n, wb.host_busy_s / args.n
        rows = [
            [
                "executions/s",
                f"{o_rate:.2f}",
                f"{b_rate:.2f}",
                ratio(o_rate, b_rate),
                f">= {TARGET_THROUGHPUT}x",
                "ok" if o_rate / b_rate >= TARGET_THROUGHPUT else "MISSED",
            ],
            ["latency p50 ms (to exit)", f"{pct(o_lat, 50):.0f}", f"{pct(b_lat, 50):.0f}",
             ratio(pct(o_lat, 50), pct(b_lat, 50)), "", ""],
            ["latency p90 ms (to exit)", f"{pct(o_lat, 90):.0f}", f"{pct(b_lat, 90):.0f}",
             ratio(pct(o_lat, 90), pct(b_lat, 90)), "", ""],
            ["submit->RUNNING p50 / p90 ms", f"{pct(o_run, 50):.0f} / {pct(o_run, 90):.0f}",
             "", "", "", ""],
            ["host CPU busy", f"{wo.host_busy_s / wo.seconds:.2f} cores",
             f"{wb.host_busy_s / wb.seconds:.2f} cores", "", "", ""],
            ["host CPU-s per execution", f"{o_cpu:.3f}", f"{b_cpu:.3f}", ratio(o_cpu, b_cpu),
             "", ""],
        ]  # fmt: skip
        print(f"== concurrency {c}: {args.n} runs, closed loop ==")
        print(table(rows, ["figure", "aegis", "bare Docker", "ratio", "target", ""]))
        print()
        print(cpu_table({f"aegis C={c}": (wo, args.n), f"bare C={c}": (wb, args.n)}))
        if any(k.startswith("edge ") for k in wo.by_component):
            e_o, e_b = edge_cpu(wo, bare=False) / args.n, edge_cpu(wb, bare=True) / args.n
            print(
                f"\nedges' CPU per execution (edge raylet trees + Docker): {e_o:.3f} CPU-s; "
                f"bare Docker per run (Docker + SDK client): {e_b:.3f} CPU-s; "
                f"ratio {e_o / e_b:.3f}x (target <= {TARGET_EDGE_CPU}x: "
                f"{'ok' if e_o / e_b <= TARGET_EDGE_CPU else 'MISSED'})"
            )
        print()
    api.close()


if __name__ == "__main__":
    main()
