#!/usr/bin/env python3
"""Benchmark: orchestration overhead of one execution against a bare Docker start.

Submits the hello agent N times sequentially, then N times with C concurrent submitters, and
prints submit->RUNNING and submit->SUCCEEDED latency (p50/p90) next to a bare Docker SDK
`containers.run` of the same image and command measured in the same run, with their ratio.

Needs a running node (`aegis up`). Usage: python scripts/bench_submit.py [-n 10] [-c 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import yaml

from aegis_ray import Client

MANIFEST = Path(__file__).resolve().parent.parent / "examples" / "hello-agent.yaml"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def one_execution(c: Client, text: str) -> tuple[float, float]:
    t0 = time.time()
    rec = c.submit(text, source=str(MANIFEST))
    while not (rec := c.get(rec.id)).finished:
        time.sleep(0.05)
    if rec.state != "SUCCEEDED" or not rec.started_at or not rec.finished_at:
        sys.exit(f"execution {rec.id} ended {rec.state}: {rec.reason}")
    return rec.started_at.timestamp() - t0, rec.finished_at.timestamp() - t0


def one_bare(client: docker.DockerClient, image: str, command: list[str]) -> tuple[float, float]:
    t0 = time.time()
    container = client.containers.run(image, command, detach=True, network_mode="none")
    t_running = time.time()
    container.wait()
    t_done = time.time()
    container.remove(force=True)
    return t_running - t0, t_done - t0


def report(label: str, pairs: list[tuple[float, float]], bare: list[tuple[float, float]]) -> None:
    for idx, what in ((0, "submit->RUNNING  "), (1, "submit->SUCCEEDED")):
        ours = [p[idx] for p in pairs]
        base = [b[idx] for b in bare]
        print(
            f"{label:<14} {what} p50 {statistics.median(ours) * 1000:7.0f} ms"
            f"  p90 {pct(ours, 90) * 1000:7.0f} ms | bare docker p50 "
            f"{statistics.median(base) * 1000:6.0f} ms  p90 {pct(base, 90) * 1000:6.0f} ms"
            f" | ratio p50 {statistics.median(ours) / statistics.median(base):5.1f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="executions per phase")
    ap.add_argument("-c", type=int, default=4, help="concurrent submitters in phase 2")
    args = ap.parse_args()
    c = Client.from_env("rest")
    text = MANIFEST.read_text()
    spec = yaml.safe_load(text)["spec"]["runtime"]
    dk = docker.from_env()

    one_execution(c, text)  # warm-up: worker processes, image cache
    one_bare(dk, spec["image"], spec["command"])
    bare = [one_bare(dk, spec["image"], spec["command"]) for _ in range(args.n)]
    sequential = [one_execution(c, text) for _ in range(args.n)]
    with ThreadPoolExecutor(args.c) as pool:
        concurrent = list(pool.map(lambda _: one_execution(c, text), range(args.n)))
    print(
        f"hello agent, n={args.n} per phase, concurrency {args.c}; bare = docker SDK "
        "containers.run(detach) -> started, wait() -> exited"
    )
    report("sequential", sequential, bare)
    report(f"concurrent x{args.c}", concurrent, bare)


if __name__ == "__main__":
    main()
