"""How the CLI shows things: rich tables on a terminal, JSON or YAML for scripts."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

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


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


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


def short_time(ts: str | None) -> str:
    return (ts or "")[:19].replace("T", " ")


def executions_table(items: list[dict[str, Any]]) -> Table:
    t = Table(box=None, header_style="bold")
    t.add_column("ID", no_wrap=True, min_width=36)
    t.add_column("NAME", no_wrap=True, min_width=8)
    t.add_column("STATE", no_wrap=True, min_width=9)
    t.add_column("ATTEMPT", no_wrap=True)
    t.add_column("NODE", no_wrap=True)
    t.add_column("EXIT", no_wrap=True)
    t.add_column("CREATED", no_wrap=True, min_width=19)
    t.add_column("REASON", no_wrap=True, overflow="ellipsis", max_width=48)
    for e in items:
        t.add_row(
            str(e["id"]),
            e.get("name") or "",
            state_text(e.get("state")),
            str(e.get("attempt", "")),
            e.get("node_id") or "",
            "" if e.get("exit_code") is None else str(e["exit_code"]),
            short_time(e.get("created_at")),
            (e.get("reason") or "")[:60],
        )
    return t


def execution_detail(e: dict[str, Any]) -> Table:
    t = Table(box=None, show_header=False)
    t.add_column(style="bold")
    t.add_column()
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
        t.add_row(
            key, state_text(value) if key == "state" else ("" if value is None else str(value))
        )
    for a in e.get("attempts", []):
        t.add_row(
            f"attempt {a.get('attempt')}",
            f"node {a.get('node_id')}  {a.get('outcome') or 'running'}  {a.get('reason') or ''}",
        )
    return t


def nodes_table(items: list[dict[str, Any]]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in (
        "NODE",
        "TYPE",
        "REGION",
        "TAGS",
        "STATUS",
        "CPU used/total",
        "MEMORY used/total",
        "GPU",
        "EXECUTIONS",
        "LAST HEARTBEAT",
    ):
        t.add_column(col, no_wrap=True)
    for n in items:
        tot, free = n["total"], n["free"]
        status = n["status"]
        colour = {"ready": "green", "draining": "yellow"}.get(status, "red")
        used_cpu = (tot["cpu_millis"] - free["cpu_millis"]) / 1000
        used_mem = (tot["memory_bytes"] - free["memory_bytes"]) / 2**30
        t.add_row(
            n["node_id"],
            n["role"],
            n.get("region") or "",
            ",".join(n["tags"]),
            f"[{colour}]{status}[/]",
            f"{used_cpu:g}/{tot['cpu_millis'] / 1000:g}",
            f"{used_mem:.1f}/{tot['memory_bytes'] / 2**30:.1f}Gi",
            f"{tot['gpu'] - free['gpu']}/{tot['gpu']}",
            str(n.get("executions", 0)),
            (n.get("last_heartbeat") or "")[11:19],
        )
    return t


def plan_table(plan: dict[str, Any]) -> Table:
    t = Table(box=None, header_style="bold", title=plan.get("summary"))
    t.add_column("NODE")
    t.add_column("FITS")
    t.add_column("WHY NOT")
    fits_now = set(plan.get("fits_now", []))
    later = set(plan.get("fits_later", []))
    for node in fits_now:
        t.add_row(node, "[green]now[/]", "")
    for n in plan.get("nodes", []):
        verdict = "[yellow]later[/]" if n["node_id"] in later else "[red]never[/]"
        t.add_row(n["node_id"], verdict, "; ".join(r["message"] for r in n["reasons"]))
    if plan.get("nodes_omitted"):
        t.add_row(f"… {plan['nodes_omitted']} more", "", "(cut to fit the gRPC error metadata)")
    return t
