#!/usr/bin/env python3
"""Benchmark: sequential submit->RUNNING and submit->SUCCEEDED of the hello agent vs bare Docker.

Command (a running stack, `aegis up`; under the e2e lock on a shared machine):

    flock /tmp/aegis-e2e.lock python3 scripts/bench_submit.py -n 20

Ours: one execution at a time over REST (POST /v1/executions with the manifest as YAML); the
next is submitted once the client has seen the previous one end (its event stream). submit =
the client's clock just before the POST; RUNNING and SUCCEEDED = the row's `started_at` and
`finished_at` (PostgreSQL's clock on the same host).

Bare: the Docker SDK runs the same container with the options aegis's DockerRuntime.start uses
(image, command, env incl. the task, init, read-only root, tmpfs /tmp, cap_drop ALL,
no-new-privileges, user 65534, pids limit, CPU quota, memory limit, network none):
RUNNING = `containers.run(detach=True)` returned, SUCCEEDED = `wait()` returned; then
`remove()`. Ours and bare alternate, one of each per round, after one warm-up of each, so
both see the same background load.

Targets (issue 10): both ratios <= 1.3x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from benchlib import HELLO, Api, Bare, Stack, pct, ratio, table

TARGET = 1.3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="executions of each kind (default 20)")
    ap.add_argument("--manifest", type=Path, default=HELLO, help="agent manifest (hello)")
    args = ap.parse_args()
    if not 1 <= args.n <= 1000:
        sys.exit("-n must be 1..1000")
    stack = Stack.from_env()
    text = args.manifest.read_text()
    api = Api(stack)
    bare = Bare(text)
    bare.cleanup()
    api.health()

    bare.run()  # warm-up: image cache, engine, worker paths, connections
    api.run(text)
    ours, base = [], []
    for _ in range(args.n):
        b = bare.run()
        if b.exit_code != 0:
            sys.exit(f"bare container exited {b.exit_code}")
        base.append(b)
        o = api.run(text)
        if o.state != "SUCCEEDED" or o.to_running is None or o.to_done is None:
            sys.exit(f"execution {o.id} ended {o.state}: {o.reason}")
        ours.append(o)

    ms = 1000.0
    o_run = [o.to_running * ms for o in ours if o.to_running is not None]
    o_done = [o.to_done * ms for o in ours if o.to_done is not None]
    b_run = [(b.running - b.started) * ms for b in base]
    b_done = [(b.exited - b.started) * ms for b in base]
    rows = []
    for name, mine, theirs in (
        ("submit->RUNNING", o_run, b_run),
        ("submit->SUCCEEDED", o_done, b_done),
    ):
        for p in (50, 90):
            a, b = pct(mine, p), pct(theirs, p)
            target = f"<= {TARGET}x" if p == 50 else ""
            ok = "" if p != 50 else ("ok" if a / b <= TARGET else "MISSED")
            rows.append([f"{name} p{p}", f"{a:.0f}", f"{b:.0f}", ratio(a, b), target, ok])
    print(
        f"hello agent, sequential, n={args.n} each (+1 warm-up), ours and bare alternating; "
        f"API {stack.api_url}"
    )
    print(
        table(rows, ["figure", "aegis ms", "bare Docker ms", "ratio", "target", ""], right_from=1)
    )
    accept = [(o.accepted - o.posted) * ms for o in ours]
    tail = [(o.finished_at - o.started_at) * ms for o in ours if o.finished_at and o.started_at]
    seen = [(o.seen_done - o.finished_at) * ms for o in ours if o.finished_at]
    b_exit = [(b.exited - b.running) * ms for b in base]
    b_rm = [(b.removed - b.exited) * ms for b in base]
    print()
    details = [
        ("aegis: POST answered (accept)", accept),
        ("aegis: RUNNING -> SUCCEEDED", tail),
        ("aegis: SUCCEEDED -> client saw the end", seen),
        ("bare: run(detach) returned -> wait() returned", b_exit),
        ("bare: remove()", b_rm),
    ]
    print(
        table(
            [[name, f"{pct(v, 50):.0f}", f"{pct(v, 90):.0f}"] for name, v in details],
            ["detail", "p50 ms", "p90 ms"],
        )
    )
    print(
        f"\nmeans: aegis submit->RUNNING {statistics.mean(o_run):.0f} ms, ->SUCCEEDED "
        f"{statistics.mean(o_done):.0f} ms; bare {statistics.mean(b_run):.0f} / "
        f"{statistics.mean(b_done):.0f} ms"
    )
    api.close()


if __name__ == "__main__":
    main()
