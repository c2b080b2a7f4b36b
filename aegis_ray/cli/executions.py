"""`aegis submit | list | get | events | logs | cancel | plan`: executions through the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from aegis_ray.cli.render import (
    Output,
    console,
    emit,
    execution_detail,
    executions_table,
    plan_table,
    state_text,
)
from aegis_ray.cli.session import (
    EXIT_BAD_INPUT,
    EXIT_BY_STATE,
    OutputOpt,
    Session,
    call,
    load_or_exit,
    session,
    stream,
)
from aegis_ray.contract.executions import End, Event, LogLine

app = typer.Typer()


@app.command()
def submit(
    ctx: typer.Context,
    file: Path,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream state and logs")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Submit an agent manifest; with --follow, exit with the execution's status."""
    load_or_exit(file)
    s = session(ctx)
    rec = call(s.client().submit, file, source=str(file)).to_json()
    if not follow:
        if not emit(rec, output):
            console.print(f"submitted [bold]{rec['id']}[/] {state_text(rec['state'])}")
            if rec.get("waiting"):
                console.print(f"[yellow]{rec['waiting']}[/]")
        return
    if output == Output.table:
        console.print(f"submitted [bold]{rec['id']}[/]")
    raise typer.Exit(_follow(s, rec["id"], output))


def _follow(s: Session, execution_id: str, output: Output) -> int:
    """Print state changes and log lines as they happen; return the exit code for the end state."""
    c = s.client()
    quiet = output != Output.table
    state = "PENDING"
    with console.status("waiting for placement", spinner="dots") as spinner:
        for item in stream(c.watch(execution_id)):
            if isinstance(item, End):
                break
            if quiet:
                continue
            if isinstance(item, Event):
                ev = item.to_json()
                state = ev.get("to_state") or state
                message = escape(ev.get("message") or "")
                spinner.update(f"{state.lower()}: {message}")
                console.print(
                    f"[dim]{ev['ts'][11:23]}[/] {state_text(ev.get('to_state') or '')}"
                    f" {message}".rstrip(),
                    highlight=False,
                )
            elif isinstance(item, LogLine):
                # Agent output is text, never markup.
                style = "red" if item.stream == "stderr" else None
                console.print(item.line, style=style, highlight=False, markup=False)
    rec = call(c.get, execution_id).to_json()
    if not emit(rec, output):
        console.print(
            f"{state_text(rec['state'])} exit code {rec.get('exit_code')}"
            + (f" — {escape(rec['reason'])}" if rec.get("reason") else "")
        )
    return EXIT_BY_STATE.get(rec["state"], 1)


@app.command("list")
def list_(
    ctx: typer.Context,
    state: Annotated[list[str] | None, typer.Option(help="filter by state (repeatable)")] = None,
    name: Annotated[str | None, typer.Option(help="filter by agent name")] = None,
    limit: int = 50,
    output: OutputOpt = Output.table,
) -> None:
    """List executions, newest first."""
    page = call(session(ctx).client().list, states=state, name=name, limit=limit)
    items = [e.to_json() for e in page.items]
    if not emit(items, output):
        console.print(executions_table(items))


@app.command()
def get(ctx: typer.Context, execution_id: str, output: OutputOpt = Output.table) -> None:
    """Show one execution with its attempts."""
    rec = call(session(ctx).client().get, execution_id).to_json()
    if not emit(rec, output):
        console.print(execution_detail(rec))


@app.command()
def events(ctx: typer.Context, execution_id: str, output: OutputOpt = Output.table) -> None:
    """Show an execution's state changes and notes."""
    items = [e.to_json() for e in call(session(ctx).client().events, execution_id).items]
    if emit(items, output):
        return
    for ev in items:
        console.print(
            f"[dim]{ev['ts'][:23]}[/] {state_text(ev.get('to_state') or '')} "
            f"{escape(ev.get('message') or '')}",
            highlight=False,
        )


@app.command()
def logs(
    ctx: typer.Context,
    execution_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Print an execution's output (stdout and stderr, in order)."""
    c = session(ctx).client()
    if follow:
        for item in stream(c.watch(execution_id, events=False)):
            if isinstance(item, LogLine):
                shown = json.dumps(item.to_json()) if output != Output.table else item.line
                print(shown, flush=True)
        return
    if output == Output.table:
        for line in stream(c.logs(execution_id)):
            print(line.line)
        return
    emit([line.to_json() for line in stream(c.logs(execution_id))], output)


@app.command()
def cancel(ctx: typer.Context, execution_id: str, output: OutputOpt = Output.table) -> None:
    """Cancel an execution: its container is stopped and it ends CANCELLED."""
    res = call(session(ctx).client().cancel, execution_id).to_json()
    if not emit(res, output):
        console.print(f"cancel requested for {execution_id}")


@app.command()
def plan(ctx: typer.Context, file: Path, output: OutputOpt = Output.table) -> None:
    """Dry run: which nodes could take this manifest, and why the others cannot."""
    load_or_exit(file)
    res = call(session(ctx).client().plan, file, source=str(file)).to_json()
    if not emit(res, output):
        console.print(plan_table(res))
    raise typer.Exit(0 if res["feasible"] else EXIT_BAD_INPUT)
