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

Then, where the time goes (p50 of each step, per execution): the execution's state events
(GET /v1/executions/ID/events, PostgreSQL's clock) joined with Docker's container events
(create, start, die, destroy; the engine's clock) for both kinds. Containers are matched by
name: aegis names them aegis-<execution id[:12]>-a<attempt>.

Targets (issue 10): both ratios <= 1.3x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from benchlib import HELLO, Api, Bare, BareRun, Outcome, Stack, pct, ratio, table

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
    t_begin = time.time()
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
            us, them = pct(mine, p), pct(theirs, p)
            target = f"<= {TARGET}x" if p == 50 else ""
            ok = "" if p != 50 else ("ok" if us / them <= TARGET else "MISSED")
            rows.append([f"{name} p{p}", f"{us:.0f}", f"{them:.0f}", ratio(us, them), target, ok])
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
    breakdown(api, bare, ours, base, t_begin)
    api.close()


def breakdown(api: Api, bare: Bare, ours: list[Outcome], base: list[BareRun], since: float) -> None:
    engine = bare.engine_events(since, time.time())
    steps: dict[str, list[float]] = {}

    def add(name: str, a: float | None, b: float | None) -> None:
        if a is not None and b is not None:
            steps.setdefault(name, []).append((b - a) * 1000)

    for o in ours:
        st = api.state_times(o.id)
        ev = engine.get(f"aegis-{o.id[:12]}-a1", {})
        add("aegis: POST sent -> PENDING (row inserted)", o.posted, st.get("PENDING"))
        add(
            "aegis: PENDING -> SCHEDULED (placement group ready)",
            st.get("PENDING"),
            st.get("SCHEDULED"),
        )
        add("aegis: SCHEDULED -> STARTING", st.get("SCHEDULED"), st.get("STARTING"))
        add("aegis: STARTING -> docker create event", st.get("STARTING"), ev.get("create"))
        add("aegis: create event -> start event (engine)", ev.get("create"), ev.get("start"))
        add("aegis: docker start -> RUNNING", ev.get("start"), st.get("RUNNING"))
        add("aegis: docker start -> die (the agent's run)", ev.get("start"), ev.get("die"))
        add("aegis: die -> SUCCEEDED", ev.get("die"), st.get("SUCCEEDED"))
        add("aegis: die -> destroy (container removed)", ev.get("die"), ev.get("destroy"))
    for b in base:
        ev = engine.get(b.name, {})
        add("bare: run() called -> docker create event", b.started, ev.get("create"))
        add("bare: create event -> start event (engine)", ev.get("create"), ev.get("start"))
        add("bare: docker start -> run(detach) returned", ev.get("start"), b.running)
        add("bare: docker start -> die (the agent's run)", ev.get("start"), ev.get("die"))
        add("bare: die -> wait() returned", ev.get("die"), b.exited)
    print("\nwhere the time goes (client, PostgreSQL and Docker clocks: same host)")
    rows = [[k, str(len(v)), f"{pct(v, 50):.0f}", f"{pct(v, 90):.0f}"] for k, v in steps.items()]
    print(table(rows, ["step", "n", "p50 ms", "p90 ms"]))


if __name__ == "__main__":
    main()
