"""`aegis submit | list | get | wait | events | logs | cancel | plan`: executions through the API.

Every command takes an execution id or its first characters (at least 4; an ambiguous prefix
is refused with the ids it matches). Commands that wait (`submit -f`, `wait`, `logs -f`,
`get -w`, `cancel --wait`) exit with the execution's code; Ctrl-C there leaves the execution
running and exits 75 (session.EXIT_DETACHED).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from aegis_ray.cli.render import (
    CLUSTER_EVENT_COLUMNS,
    EXECUTION_COLUMNS,
    Output,
    cluster_event_row,
    cluster_events_table,
    console,
    emit,
    err_console,
    event_line,
    execution_detail,
    execution_row,
    executions_table,
    plan_table,
    short_id,
    show,
    state_text,
    table,
    terminal_safe,
)
from aegis_ray.cli.session import (
    EXIT_BAD_INPUT,
    EXIT_BY_STATE,
    EXIT_DETACHED,
    OutputOpt,
    Session,
    call,
    examples,
    fail,
    load_or_exit,
    manifest_text,
    refused,
    session,
    stream,
)
from aegis_ray.contract.cluster import ClusterEvent
from aegis_ray.contract.executions import End, Event, LogLine
from aegis_ray.sdk.errors import AlreadyFinished, ApiError, ApiUnreachable

app = typer.Typer()

ManifestArg = Annotated[Path, typer.Argument(help="an Agent manifest file, or - for stdin")]
IdArg = Annotated[str, typer.Argument(help="an execution id or its first characters")]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
RawOpt = Annotated[
    bool,
    typer.Option(
        "--raw",
        help="write the agent's output with its control sequences (colours, titles...) as they"
        " are; by default each control character is shown as \\xNN",
    ),
]


def seconds(text: str, option: str) -> float:
    """A duration as people write it: 30, 30s, 5m, 2h, 1d; exits 2 otherwise."""
    m = _DURATION.match(text.strip())
    if not m:
        fail(f"{option} {text!r}: expected a duration like 30s, 5m, 2h or 1d", EXIT_BAD_INPUT)
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def _read_manifest(file: Path) -> tuple[str, str]:
    text, source = manifest_text(file)
    load_or_exit(file, text if file == Path("-") else None)
    return text if text.endswith("\n") else text + "\n", source


def _end_code(state: str | None) -> int:
    return EXIT_BY_STATE.get(state or "", 1)


def detached(execution_id: str) -> NoReturn:
    """Ctrl-C while waiting: the execution is not touched; say how to pick it up again."""
    short = short_id(execution_id)
    err_console.print(
        f"\nstopped waiting: execution {short} keeps running.\n"
        f"  follow it: aegis logs -f {short}    wait for it: aegis wait {short}\n"
        f"  stop it:   aegis cancel {short}",
        highlight=False,
    )
    raise typer.Exit(EXIT_DETACHED)


def _next_steps(execution_id: str) -> None:
    short = short_id(execution_id)
    console.print(
        f"[dim]follow: aegis logs -f {short}   wait: aegis wait {short}   "
        f"cancel: aegis cancel {short}[/]",
        highlight=False,
    )


@app.command(
    epilog=examples(
        "aegis submit examples/hello-agent.yaml",
        "aegis submit examples/hello-agent.yaml --follow",
        "cat agent.yaml | aegis submit - -q",
        "aegis submit agent.yaml --idempotency-key nightly-2026-11-30",
    )
)
def submit(
    ctx: typer.Context,
    file: ManifestArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream state and logs")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the id")] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="the same key within 24 h gives back the execution it first made, instead of"
            " a second one (a script that retries after a network error); a new one otherwise",
        ),
    ] = None,
    output: OutputOpt = Output.table,
    raw: RawOpt = False,
) -> None:
    """Submit an agent manifest; with --follow, exit with the execution's status."""
    text, source = _read_manifest(file)
    s = session(ctx)
    submitted = call(s.client().submit, text, source=source, idempotency_key=idempotency_key)
    rec = submitted.to_json()
    if quiet:
        print(rec["id"])
    elif not follow:
        if not emit(rec, output):
            console.print(f"submitted [bold]{rec['id']}[/] {state_text(rec['state'])}")
            if rec.get("waiting"):
                console.print(f"[yellow]{escape(rec['waiting'])}[/]", soft_wrap=True)
            _next_steps(rec["id"])
    elif output in (Output.table, Output.wide):
        console.print(f"submitted [bold]{rec['id']}[/]")
    if follow:
        raise typer.Exit(_follow(s, rec["id"], output, raw))


def _follow(s: Session, execution_id: str, output: Output, raw: bool) -> int:
    """Print state changes and log lines as they happen; return the exit code for the end state.

    The agent's lines are written as they are: no wrapping, no markup, whatever the width."""
    c = s.client()
    quiet = output not in (Output.table, Output.wide)
    # The spinner only while nothing has been printed: once lines come, they are written as
    # they are (a live display would re-wrap them to the terminal's width).
    spinner = console.status("waiting for placement", spinner="dots")
    spinner.start()
    try:
        for item in stream(c.watch(execution_id)):
            if isinstance(item, End):
                break
            if quiet:
                continue
            spinner.stop()
            if isinstance(item, Event):
                console.print(event_line(item.to_json()), highlight=False, soft_wrap=True)
            elif isinstance(item, LogLine):
                # stderr lines too: one stream keeps the agent's order.
                sys.stdout.write((item.line if raw else terminal_safe(item.line)) + "\n")
                sys.stdout.flush()
        spinner.stop()
        # `wait`, not `get`: it rides out an API that is away just now, as the watch did.
        rec = call(c.wait, execution_id).to_json()
    except KeyboardInterrupt:
        spinner.stop()
        detached(execution_id)
    if not emit(rec, output):
        console.print(
            f"{state_text(rec['state'])} exit code {rec.get('exit_code')}"
            + (f" — {escape(rec['reason'])}" if rec.get("reason") else ""),
            soft_wrap=True,
        )
    return _end_code(rec["state"])


@app.command(
    "list",
    epilog=examples(
        "aegis list",
        "aegis list --state RUNNING --state PENDING -o wide",
        "aegis list -l team=search --name hello-agent",
        "aegis list -w",
    ),
)
def list_(
    ctx: typer.Context,
    state: Annotated[list[str] | None, typer.Option(help="filter by state (repeatable)")] = None,
    name: Annotated[str | None, typer.Option(help="filter by agent name")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="key=value on the manifest's labels (repeatable)"),
    ] = None,
    limit: int = 50,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="then print each state change as it happens")
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """List executions, newest first."""
    c = session(ctx).client()
    page = call(c.list, states=state, name=name, limit=limit, labels=label)
    items = [e.to_json() for e in page.items]
    if watch and _line_format(output) == Output.json:
        for item in items:
            _emit_line(item, output)
    elif not emit(items, output):
        show(executions_table(items, output))
    if not watch:
        return
    wanted = {s.upper() for s in state or []}
    known = {e["id"] for e in items}
    after = call(c.cluster_events, limit=1).items
    try:
        for ev in _feed(c.watch_cluster(after=after[-1].id if after else 0)):
            if ev.kind != "execution" or (name and ev.name != name):
                continue
            if (wanted and ev.to_state not in wanted) or (label and ev.execution_id not in known):
                continue
            row = ev.to_json()
            if _emit_line(row, output):
                continue
            rec = {"id": ev.execution_id, "name": ev.name, "state": ev.to_state}
            rec |= {"node_id": ev.node_id, "created_at": row["ts"], "reason": ev.message}
            show(table(EXECUTION_COLUMNS, [execution_row(rec, output)], output))
    except KeyboardInterrupt:
        return


def _feed(items: Iterator[Any]) -> Iterator[ClusterEvent]:
    for item in stream(items):
        assert isinstance(item, ClusterEvent)
        yield item


@app.command(
    epilog=examples("aegis get 7a3f2feb", "aegis get 7a3f2feb -o yaml", "aegis get 7a3f -w")
)
def get(
    ctx: typer.Context,
    execution_id: IdArg,
    watch: Annotated[
        bool,
        typer.Option("--watch", "-w", help="then print its state changes until it ends"),
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Show one execution with its attempts."""
    c = session(ctx).client()
    rec = call(c.get, execution_id).to_json()
    if not emit(rec, output):
        show(execution_detail(rec))
    if watch:
        raise typer.Exit(_events_until_end(c, rec, output))


def _events_until_end(c: Any, rec: dict[str, Any], output: Output) -> int:
    """Print the execution's new events until it ends; its exit code."""
    seen = call(c.events, rec["id"]).items
    end: str | None = rec["state"]
    try:
        for item in stream(c.watch(rec["id"], logs=False, after_event=seen[-1].id if seen else 0)):
            if isinstance(item, End):
                end = item.state.value if item.state else None
            elif isinstance(item, Event) and not _emit_line(item.to_json(), output):
                console.print(event_line(item.to_json()), highlight=False, soft_wrap=True)
    except KeyboardInterrupt:
        detached(rec["id"])
    return _end_code(end)


def _line_format(output: Output) -> Output:
    """Streams print one JSON object a line (not an indented document)."""
    return Output.table if output in (Output.table, Output.wide) else Output.json


def _emit_line(data: dict[str, Any], output: Output) -> bool:
    """One item of a stream as a JSON line (-o json or yaml); False: the caller draws it."""
    if _line_format(output) != Output.json:
        return False
    print(json.dumps(data, default=str), flush=True)
    return True


@app.command(
    epilog=examples(
        "aegis wait 7a3f2feb && echo it succeeded",
        "aegis wait 7a3f2feb --timeout 5m",
    )
)
def wait(
    ctx: typer.Context,
    execution_id: IdArg,
    timeout: Annotated[
        str | None, typer.Option(help="give up after this long (30s, 5m, 1h): exit 75")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Wait until an execution ends; exit with its code.

    0 SUCCEEDED, 1 FAILED, 124 TIMED_OUT, 130 CANCELLED; 75 if you stop waiting first."""
    c = session(ctx).client()
    limit = seconds(timeout, "--timeout") if timeout else None
    rec = call(c.get, execution_id)
    try:
        rec = call(c.wait, rec.id, timeout=limit)
    except TimeoutError:
        err_console.print(f"{short_id(rec.id)} still not finished after {timeout}")
        raise typer.Exit(EXIT_DETACHED) from None
    except KeyboardInterrupt:
        detached(rec.id)
    body = rec.to_json()
    if not emit(body, output):
        console.print(
            f"{short_id(rec.id)} {state_text(body['state'])} exit code {body.get('exit_code')}"
            + (f" — {escape(body['reason'])}" if body.get("reason") else ""),
            soft_wrap=True,
        )
    raise typer.Exit(_end_code(body["state"]))


@app.command(
    epilog=examples(
        "aegis events 7a3f2feb",
        "aegis events --all",
        "aegis events --all -f",
        "aegis events --all -o json | jq .message",
    )
)
def events(
    ctx: typer.Context,
    execution_id: Annotated[
        str | None, typer.Argument(help="an execution id or prefix (or --all)")
    ] = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all", "-A", help="the whole cluster: node joins, losses, drains; state changes"
        ),
    ] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="then print new ones")] = False,
    limit: Annotated[int, typer.Option(help="--all: how many of the latest to show")] = 50,
    output: OutputOpt = Output.table,
) -> None:
    """An execution's state changes, or (--all) the whole cluster's events.

    --all: node joins, losses and drains, and every execution's state changes (a non-admin
    token sees its own executions only)."""
    c = session(ctx).client()
    if all_:
        _cluster_events(c, follow, limit, output)
        return
    if execution_id is None:
        fail("give an execution id, or --all for the whole cluster", EXIT_BAD_INPUT)
    rec = call(c.get, execution_id).to_json()
    items = [e.to_json() for e in call(c.events, rec["id"]).items]
    if not emit(items, output):
        for ev in items:
            console.print(event_line(ev), highlight=False, soft_wrap=True)
    if follow:
        raise typer.Exit(_events_until_end(c, rec, output))


def _cluster_events(c: Any, follow: bool, limit: int, output: Output) -> None:
    items = call(c.cluster_events, limit=limit).items
    rows = [e.to_json() for e in items]
    # Followed, JSON comes one object a line from the first (like the stream after it).
    if follow and _line_format(output) == Output.json:
        for row in rows:
            _emit_line(row, output)
    elif not emit(rows, output):
        show(cluster_events_table(rows, output))
    if not follow:
        return
    try:
        # 0 when nothing was shown: nothing older can come, and a resumed feed keeps a cursor.
        for ev in _feed(c.watch_cluster(after=items[-1].id if items else 0)):
            if not _emit_line(ev.to_json(), output):
                show(
                    table(CLUSTER_EVENT_COLUMNS, [cluster_event_row(ev.to_json(), output)], output)
                )
    except KeyboardInterrupt:
        return


@app.command(
    epilog=examples(
        "aegis logs 7a3f2feb",
        "aegis logs 7a3f2feb --tail 20 -f",
        "aegis logs 7a3f2feb --since 5m --timestamps",
    )
)
def logs(
    ctx: typer.Context,
    execution_id: IdArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="until it ends; exit with its code")
    ] = False,
    tail: Annotated[int | None, typer.Option(help="only the last N lines so far")] = None,
    since: Annotated[
        str | None, typer.Option(help="only lines newer than 5m, 2h... or an ISO time")
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t", help="prefix each line with its time (UTC)")
    ] = False,
    output: OutputOpt = Output.table,
    raw: RawOpt = False,
) -> None:
    """Print an execution's output (stdout and stderr, in order); control characters are shown
    as \\xNN unless --raw."""
    c = session(ctx).client()
    rec = call(c.get, execution_id)
    cutoff = _since(since) if since else None
    lines = list(stream(c.logs(rec.id)))
    cursor = lines[-1].id if lines else 0
    shown = [ln for ln in lines if cutoff is None or ln.ts >= cutoff]
    if tail is not None:
        shown = shown[-tail:] if tail > 0 else []
    if not follow:
        if output in (Output.json, Output.yaml):
            emit([ln.to_json() for ln in shown], output)
        else:
            _print_lines(shown, timestamps, output, raw)
        return
    _print_lines(shown, timestamps, _line_format(output), raw)
    end: str | None = None
    try:
        for item in stream(c.watch(rec.id, events=False, after_log=cursor)):
            if isinstance(item, LogLine):
                _print_lines([item], timestamps, _line_format(output), raw)
            elif isinstance(item, End):
                end = item.state.value if item.state else None
        if end is None:  # the execution is gone: say how it ended rather than guess FAILED
            end = call(c.wait, rec.id).state.value
    except KeyboardInterrupt:
        detached(rec.id)
    raise typer.Exit(_end_code(end))


def _print_lines(lines: Iterable[LogLine], timestamps: bool, output: Output, raw: bool) -> None:
    """JSON lines escape control characters themselves; text lines are made terminal-safe."""
    for ln in lines:
        line = ln.line if raw else terminal_safe(ln.line)
        if output == Output.json:
            text = json.dumps(ln.to_json())
        elif timestamps:
            text = f"{ln.ts.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ} {line}"
        else:
            text = line
        sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _since(text: str) -> datetime:
    """The cutoff of --since: a duration back from now, or a time (ISO 8601; UTC if no zone)."""
    if _DURATION.match(text.strip()):
        return datetime.now(UTC) - timedelta(seconds=seconds(text, "--since"))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--since {text!r}: expected 5m, 2h... or a time like 2026-11-30T09:00", 2)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@app.command(epilog=examples("aegis cancel 7a3f2feb", "aegis cancel 7a3f2feb --wait"))
def cancel(
    ctx: typer.Context,
    execution_id: IdArg,
    wait_: Annotated[
        bool, typer.Option("--wait", help="until it has ended; exit with its code (130)")
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Cancel an execution: its container is stopped and it ends CANCELLED.

    Cancelling one that has already ended changes nothing and succeeds."""
    c = session(ctx).client()
    rec = call(c.get, execution_id)
    try:
        res = c.cancel(rec.id).to_json()
    except AlreadyFinished as err:
        state = str(err.body.get("state") or rec.state.value)
        if not emit({"id": rec.id, "state": state, "cancel_requested": False}, output):
            console.print(f"{short_id(rec.id)} had already ended: {state_text(state)}")
        raise typer.Exit(_end_code(state) if wait_ else 0) from None
    except (ApiError, ApiUnreachable) as err:
        refused(err)
    if not emit(res, output):
        console.print(f"cancel requested for {short_id(rec.id)}")
    if wait_:
        try:
            final = call(c.wait, rec.id)
        except KeyboardInterrupt:
            detached(rec.id)
        console.print(f"{short_id(rec.id)} {state_text(final.state.value)}")
        raise typer.Exit(_end_code(final.state.value))


@app.command(
    epilog=examples("aegis plan examples/hello-agent.yaml", "aegis plan - < agent.yaml -o json")
)
def plan(ctx: typer.Context, file: ManifestArg, output: OutputOpt = Output.table) -> None:
    """Dry run: which nodes could take this manifest, and why the others cannot."""
    text, source = _read_manifest(file)
    res = call(session(ctx).client().plan, text, source=source).to_json()
    if not emit(res, output):
        show(plan_table(res, output))
    raise typer.Exit(0 if res["feasible"] else EXIT_BAD_INPUT)
