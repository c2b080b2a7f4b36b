#!/usr/bin/env python3
"""Benchmark: the same API calls over REST (Serve HTTP proxy) and gRPC (Serve gRPC proxy).

Measures, in one run against a running node (`aegis up`): round trips of GetExecution,
ListExecutions and ListNodes over each transport, and the time from submit until a watch has
delivered the final state (submit + WatchExecution over gRPC, submit + the NDJSON watch over
REST). Prints p50/p90 per transport and their ratio. Reference (ray-facts.md, Serve on this
kind of machine): HTTP round trip ~11.6 ms, gRPC ~7.7 ms.

Usage: python scripts/bench_api.py [-n 200] [--executions 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aegis_ray import Client
from aegis_ray.contract.executions import End

MANIFEST = Path(__file__).resolve().parent.parent / "examples" / "hello-agent.yaml"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    fn()  # warm: connections, token cache
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def submit_and_watch(c: Any, text: str) -> float:
    t0 = time.perf_counter()
    rec = c.submit(text, source=str(MANIFEST))
    for item in c.watch(rec.id):
        if isinstance(item, End):
            assert item.state == "SUCCEEDED", item
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="round trips per call and transport")
    parser.add_argument("--executions", type=int, default=5, help="submit+watch per transport")
    args = parser.parse_args()
    clients = {"REST": Client.from_env("rest"), "gRPC": Client.from_env("grpc")}
    text = MANIFEST.read_text()
    eid = clients["REST"].submit(text, source=str(MANIFEST)).id
    calls: dict[str, Callable[[Any], Any]] = {
        "GetExecution": lambda c: c.get(eid),
        "ListExecutions(10)": lambda c: c.list(limit=10),
        "ListNodes": lambda c: c.nodes(),
    }
    print(f"{'call':<22} {'REST p50/p90 ms':>18} {'gRPC p50/p90 ms':>18} {'gRPC/REST p50':>14}")
    for name, call in calls.items():
        got = {t: timed(lambda c=c, f=call: f(c), args.n) for t, c in clients.items()}
        r, g = got["REST"], got["gRPC"]
        print(
            f"{name:<22} {pct(r, 50):>8.1f} / {pct(r, 90):<7.1f} {pct(g, 50):>8.1f} / "
            f"{pct(g, 90):<7.1f} {pct(g, 50) / pct(r, 50):>13.2f}x"
        )
    got = {
        t: [submit_and_watch(c, text) for _ in range(args.executions)] for t, c in clients.items()
    }
    r, g = got["REST"], got["gRPC"]
    print(
        f"{'submit→watch end':<22} {pct(r, 50):>8.0f} / {pct(r, 90):<7.0f} {pct(g, 50):>8.0f} / "
        f"{pct(g, 90):<7.0f} {pct(g, 50) / pct(r, 50):>13.2f}x"
    )


if __name__ == "__main__":
    main()
