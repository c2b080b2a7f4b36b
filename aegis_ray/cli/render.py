"""How the CLI shows things: tables on a terminal, JSON or YAML for scripts.

On a terminal, tables fit its width: every column keeps its full text except the one that
explains (REASON, WHY NOT, TAGS), which is cut with "…" (`-o wide` shows everything). Piped,
nothing is cut or wrapped and nothing is coloured, so `grep`, `awk` and `cut` see whole values.
Tables show ids by their first 8 characters (a prefix every command accepts); `-o wide` the
whole id. Times are ages in tables ("42s", "3h") and local times with their zone elsewhere.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

# Piped output has no width: a line is as long as its content.
_UNLIMITED = 1 << 20
console = Console(width=None if sys.stdout.isatty() else _UNLIMITED)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else _UNLIMITED)

SHORT_ID = 8
# Below this many characters, the explaining column is left out rather than cut to nothing.
MIN_FLEX = 8

STATE_STYLE = {
    "PENDING": "yellow",
    "SCHEDULED": "cyan",
    "STARTING": "cyan",
    "RUNNING": "blue",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "magenta",
    "TIMED_OUT": "red",
}
NODE_STYLE = {"ready": "green", "draining": "yellow"}


class Output(StrEnum):
    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


# Every C0 control but tab and newline, DEL, and every C1 control (U+0080-U+009F; U+009B is a
# one-character CSI): what a terminal acts on rather than shows.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def terminal_safe(text: str) -> str:
    """Text an agent wrote, made inert for a terminal: each control character (ESC, CSI, OSC's
    BEL, backspace, carriage return, C1 codes...) is shown as `\\xNN`; tab and newline stay.

    An agent's output cannot then set the window's title, colours or clipboard, move the cursor
    or hide earlier lines. `--raw` skips this."""
    return _CONTROL.sub(_visible, text)


def emit(data: Any, output: Output) -> bool:
    """Print data as JSON/YAML when asked; returns False when the caller should draw a table."""
    if output == Output.json:
        print(json.dumps(data, indent=2, default=str))
        return True
    if output == Output.yaml:
        print(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False), end="")
        return True
    return False


def state_text(state: str | None) -> str:
    s = state or "?"
    return f"[{STATE_STYLE.get(s, 'white')}]{s}[/]"


def short_id(value: str | None, output: Output = Output.table) -> str:
    return (value or "") if output == Output.wide else (value or "")[:SHORT_ID]


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        when = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def age(ts: str | None, now: datetime | None = None) -> str:
    """How long ago, as kubectl says it: 42s, 5m, 3h, 2d."""
    when = _parse(ts)
    if when is None:
        return ""
    s = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= 2 * size or (unit == "m" and s >= 60):
            return f"{s // size}{unit}"
    return f"{s}s"


def local_time(ts: str | None) -> str:
    """A timestamp in this machine's time zone, named, with its age: '2026-11-30 09:12:03
    CET (5m ago)'."""
    when = _parse(ts)
    if when is None:
        return ""
    here = when.astimezone()
    return f"{here:%Y-%m-%d %H:%M:%S} {here.tzname()} ({age(ts)} ago)"


@dataclass(frozen=True)
class Column:
    header: str
    # The one column that gives way on a narrow terminal (cut with "…", or left out).
    flexible: bool = False
    # Shown only with `-o wide`.
    wide_only: bool = False


def table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    output: Output = Output.table,
    *,
    title: str | None = None,
) -> Table:
    """A table that fits the terminal (see the module docstring); cells may hold markup."""
    keep = [i for i, c in enumerate(columns) if output == Output.wide or not c.wide_only]
    widths = {
        i: max([len(columns[i].header), *(Text.from_markup(r[i]).cell_len for r in rows)])
        for i in keep
    }
    flexible = next((i for i in keep if columns[i].flexible), None)
    room: int | None = None
    if console.is_terminal and output != Output.wide and flexible is not None:
        rigid = sum(w for i, w in widths.items() if i != flexible) + 2 * (len(keep) - 1)
        room = console.width - rigid
        if room < MIN_FLEX:
            keep.remove(flexible)
            room = None
    t = Table(box=None, header_style="bold", pad_edge=False, title=title)
    for i in keep:
        cut = room if i == flexible else None
        t.add_column(columns[i].header, no_wrap=True, overflow="ellipsis", max_width=cut)
    for r in rows:
        t.add_row(*(r[i] for i in keep))
    return t


def show(renderable: Any) -> None:
    """Print a table; piped, without the spaces that pad its last column."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    for line in captured.get().splitlines():
        print(line.rstrip())


EXECUTION_COLUMNS = (
    Column("ID"),
    Column("NAME"),
    Column("STATE"),
    Column("ATTEMPT", wide_only=True),
    Column("NODE"),
    Column("EXIT"),
    Column("AGE"),
    Column("CREATED", wide_only=True),
    Column("REASON", flexible=True),
)


def execution_row(e: dict[str, Any], output: Output) -> list[str]:
    return [
        short_id(e.get("id"), output),
        escape(e.get("name") or ""),
        state_text(e.get("state")),
        str(e.get("attempt", "")),
        escape(e.get("node_id") or ""),
        "" if e.get("exit_code") is None else str(e["exit_code"]),
        age(e.get("created_at")),
        e.get("created_at") or "",
        escape((e.get("reason") or "").replace("\n", " ")),
    ]


def executions_table(items: list[dict[str, Any]], output: Output = Output.table) -> Table:
    return table(EXECUTION_COLUMNS, [execution_row(e, output) for e in items], output)


def execution_detail(e: dict[str, Any]) -> Table:
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for key in (
        "id",
        "name",
        "state",
        "attempt",
        "node_id",
        "exit_code",
        "reason",
        "created_at",
        "started_at",
        "finished_at",
        "workflow_id",
    ):
        value = e.get(key)
        if key == "state":
            shown = state_text(value)
        elif key.endswith("_at"):
            shown = local_time(value)
        else:
            shown = "" if value is None else escape(str(value))
        t.add_row(key, shown)
    labels = (e.get("manifest") or {}).get("metadata", {}).get("labels") or {}
    if labels:
        t.add_row("labels", escape(", ".join(f"{k}={v}" for k, v in sorted(labels.items()))))
    for a in e.get("attempts") or []:
        t.add_row(
            f"attempt {a.get('attempt')}",
            escape(
                f"node {a.get('node_id')}  {a.get('outcome') or 'running'}  {a.get('reason') or ''}"
            ),
        )
    return t


NODE_COLUMNS = (
    Column("NODE"),
    Column("TYPE"),
    Column("REGION", wide_only=True),
    Column("STATUS"),
    Column("CPU"),
    Column("MEMORY"),
    Column("GPU", wide_only=True),
    Column("EXEC"),
    Column("HEARTBEAT"),
    Column("LEASES"),
    Column("ADDRESS", wide_only=True),
    Column("VERSION", wide_only=True),
    Column("TAGS", flexible=True),
)


def node_row(n: dict[str, Any]) -> list[str]:
    tot, free = n["total"], n["free"]
    status = n["status"]
    used_cpu = (tot["cpu_millis"] - free["cpu_millis"]) / 1000
    used_mem = (tot["memory_bytes"] - free["memory_bytes"]) / 2**30
    beat = n.get("last_heartbeat")
    return [
        escape(n["node_id"]),
        n["role"],
        escape(n.get("region") or ""),
        f"[{NODE_STYLE.get(status, 'red')}]{status}[/]",
        f"{used_cpu:g}/{tot['cpu_millis'] / 1000:g}",
        f"{used_mem:.1f}/{tot['memory_bytes'] / 2**30:.1f}Gi",
        f"{tot['gpu'] - free['gpu']}/{tot['gpu']}",
        str(n.get("executions", "")) if n.get("executions") is not None else "",
        f"{age(beat)} ago" if beat else "",
        escape(",".join(n.get("leases") or [])),
        escape(n.get("address") or ""),
        escape(n.get("version") or ""),
        escape(",".join(n["tags"])),
    ]


def nodes_table(items: list[dict[str, Any]], output: Output = Output.table) -> Table:
    return table(NODE_COLUMNS, [node_row(n) for n in items], output)


def node_detail(n: dict[str, Any]) -> Table:
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for header, cell in zip([c.header.lower() for c in NODE_COLUMNS], node_row(n), strict=True):
        t.add_row(header, cell)
    t.add_row("ray node", escape(n.get("ray_node_id") or ""))
    t.add_row("registered", "yes" if n.get("registered") else "no")
    return t


def plan_table(plan: dict[str, Any], output: Output = Output.table) -> Table:
    columns = (Column("NODE"), Column("FITS"), Column("WHY NOT", flexible=True))
    rows = [[escape(node), "[green]now[/]", ""] for node in plan.get("fits_now", [])]
    later = set(plan.get("fits_later", []))
    for n in plan.get("nodes", []):
        verdict = "[yellow]later[/]" if n["node_id"] in later else "[red]never[/]"
        why = "; ".join(r["message"] for r in n["reasons"])
        rows.append([escape(n["node_id"]), verdict, escape(why)])
    if plan.get("nodes_omitted"):
        rows.append([f"… {plan['nodes_omitted']} more", "", "(cut to fit the gRPC error metadata)"])
    return table(columns, rows, output, title=plan.get("summary"))


def event_line(ev: dict[str, Any]) -> str:
    """One execution event as a line: local time, state, message (markup)."""
    return (
        f"[dim]{local_clock(ev.get('ts'))}[/] {state_text(ev.get('to_state') or '')} "
        f"{escape(terminal_safe(ev.get('message') or ''))}"
    ).rstrip()


def local_clock(ts: str | None) -> str:
    when = _parse(ts)
    return f"{when.astimezone():%H:%M:%S.%f}"[:12] if when else ""


CLUSTER_EVENT_COLUMNS = (
    Column("TIME"),
    Column("KIND"),
    Column("OBJECT"),
    Column("NAME"),
    Column("CHANGE"),
    Column("NODE"),
    Column("MESSAGE", flexible=True),
)


def cluster_event_row(ev: dict[str, Any], output: Output) -> list[str]:
    when = _parse(ev.get("ts"))
    node_kind = ev.get("kind") == "node"
    before, after = ev.get("from_state"), ev.get("to_state") or ""
    change = after if node_kind else state_text(after)
    if before:
        change = f"{before} -> {change}"
    return [
        f"{when.astimezone():%Y-%m-%d %H:%M:%S %Z}" if when else "",
        ev.get("kind") or "",
        escape(ev.get("node_id") or "") if node_kind else short_id(ev.get("execution_id"), output),
        escape(ev.get("name") or ""),
        change,
        escape(ev.get("node_id") or ""),
        escape(ev.get("message") or ""),
    ]


def cluster_events_table(items: list[dict[str, Any]], output: Output = Output.table) -> Table:
    return table(CLUSTER_EVENT_COLUMNS, [cluster_event_row(e, output) for e in items], output)
