"""`aegis up | down | status`: a hybrid node on this machine, and what is running."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from aegis_ray.cli.render import Output, console, emit, nodes_table
from aegis_ray.cli.session import (
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
    Api,
    OutputOpt,
    fail,
    read_text,
    redact,
    session,
)
from aegis_ray.core.models.loading import ManifestError, parse_node_config
from aegis_ray.sdk import discovery
from aegis_ray.sdk.errors import ApiError, ApiUnreachable
from aegis_ray.settings import Settings

app = typer.Typer()


@app.command()
def up(
    config: Annotated[Path | None, typer.Option(help="NodeConfig for this node")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Start a hybrid node here: Ray head, control plane, PostgreSQL and Temporal."""
    from aegis_ray.node.stack import up as stack_up

    node = None
    if config is not None:
        try:
            node = parse_node_config(read_text(config), source=str(config))
        except ManifestError as err:
            fail(str(err), EXIT_BAD_INPUT)
        if node.spec.node.type == "edge":
            fail(
                f"{config}: spec.node.type: `aegis up` starts a head (hybrid or orchestrator); "
                "an edge node joins an existing head instead (got 'edge')",
                EXIT_BAD_INPUT,
            )
    settings = Settings()
    with console.status("starting") as status:

        def say(step: str) -> None:
            status.update(f"starting {step}")
            console.print(f"[dim]·[/] {step}", highlight=False)

        try:
            state = stack_up(settings, node, say)
        except (RuntimeError, TimeoutError, OSError) as err:
            fail(f"aegis up failed: {err}", EXIT_UNAVAILABLE)
    if not emit(redact(state.__dict__), output):
        console.print(
            f"[green]aegis is up[/]  API {state.api_url}  gRPC {state.grpc_address}"
            f"  Ray {state.ray_address}"
        )
        if state.dashboard_url:
            console.print(f"Ray dashboard {state.dashboard_url}")
        console.print(f"admin token in {settings.admin_token_path}")


@app.command()
def down() -> None:
    """Stop what `aegis up` started (and nothing else)."""
    from aegis_ray.node.stack import down as stack_down

    stopped = stack_down(Settings(), lambda s: console.print(f"[dim]·[/] stopping {s}"))
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def status(ctx: typer.Context, output: OutputOpt = Output.table) -> None:
    """What is running: Ray, API, PostgreSQL, Temporal, nodes."""
    from aegis_ray.node.stack import UpState

    s = session(ctx)
    settings = Settings()
    state = UpState.load(settings.state_path)
    shown = redact(state.__dict__) if state else None
    report: dict[str, Any] = {"home": str(settings.home), "up": shown}
    c = s.client() if settings.admin_token_path.exists() or settings.api_token else None
    health: dict[str, Any] = {"status": "unreachable"}
    nodes: list[dict[str, Any]] = []
    if c is not None:
        try:
            health = c.health().to_json()
            nodes = [n.to_json() for n in c.nodes().items]
        except ApiError as err:
            health = err.body
        except ApiUnreachable as err:
            health = {"status": "unreachable", "message": str(err)}
    report |= {"api": health, "nodes": nodes}
    if emit(report, output):
        raise typer.Exit(0 if health.get("status") == "ok" else EXIT_UNAVAILABLE)
    console.print(f"AEGIS_HOME {settings.home}")
    if state:
        console.print(
            f"Ray        {state.ray_address} (auth {state.ray_auth_mode}"
            f"{', started by aegis' if state.started.get('ray') else ', attached'})"
        )
        console.print(f"PostgreSQL {redact(state.__dict__)['database_url']}")
        console.print(f"Temporal   {state.temporal_address}")
        if state.dashboard_url:
            console.print(f"Dashboard  {state.dashboard_url}")
    colour = "green" if health.get("status") == "ok" else "red"
    where = (
        f"gRPC {discovery.grpc_address(settings)}"
        if s.api == Api.grpc
        else discovery.api_url(settings)
    )
    console.print(f"API        {where} [{colour}]{health.get('status')}[/]")
    for key in ("database", "temporal"):
        if key in health:
            console.print(f"  {key}: {health[key]}")
    if nodes:
        console.print(nodes_table(nodes))
    if health.get("status") != "ok":
        raise typer.Exit(EXIT_UNAVAILABLE)
