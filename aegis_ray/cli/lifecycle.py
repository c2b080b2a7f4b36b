"""`aegis up | down | status | env | dashboard`: a hybrid node on this machine, what is running,
and how Ray's own tools (`ray status`, `ray list actors`, the dashboard) reach it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from aegis_ray.cli.render import Output, console, emit, nodes_table, show
from aegis_ray.cli.session import (
    EXIT_BAD_INPUT,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    OutputOpt,
    examples,
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


@app.command(epilog=examples("aegis up", "aegis up --config my-node.yaml", "aegis up --monitoring"))
def up(
    config: Annotated[Path | None, typer.Option(help="NodeConfig for this node")] = None,
    monitoring: Annotated[
        bool,
        typer.Option(
            "--monitoring",
            help="also start Prometheus (Debian's package) scraping Ray and the API "
            "(AEGIS_PROMETHEUS_PORT, default 9090)",
        ),
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Start a hybrid node here: Ray head, control plane, PostgreSQL, Temporal and OpenBao."""
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
            state = stack_up(settings, node, say, monitoring=monitoring)
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
        _say_ray_token(state)
        if state.prometheus_url:
            console.print(f"Prometheus {state.prometheus_url}")


def _gcs_line(state: Any, settings: Settings) -> str:
    """Where the head keeps its state, and how often the supervisor restarted its GCS."""
    from aegis_ray.adapters.ray.gcs_supervisor import Record
    from aegis_ray.node.stack import gcs_supervisor_dir

    line = f"Redis {state.redis_address} ({state.gcs_store})"
    record = Record.load(gcs_supervisor_dir(settings) / "record.json")
    if record is not None:
        line += f", GCS pid {record.gcs_pid}, restarted {len(record.restarts)} times"
    return line


def _say_ray_token(state: Any) -> None:
    if state.ray_auth_mode == "token" and state.ray_token_path:
        console.print(
            f"Ray token in {state.ray_token_path} (dashboard login; for `ray status` and "
            '`ray list actors`: eval "$(aegis env)")',
            soft_wrap=True,
        )


@app.command(epilog=examples("aegis down"))
def down() -> None:
    """Stop what `aegis up` started (and nothing else)."""
    from aegis_ray.node.stack import down as stack_down

    stopped = stack_down(Settings(), lambda s: console.print(f"[dim]·[/] stopping {s}"))
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command(epilog=examples("aegis status", "aegis status -o json"))
def status(ctx: typer.Context, output: OutputOpt = Output.table) -> None:
    """What is running: Ray, API, PostgreSQL, Temporal, OpenBao, nodes."""
    from aegis_ray.node.stack import UpState

    s = session(ctx)
    settings = Settings()
    state = UpState.load(settings.state_path)
    shown = redact(state.__dict__) if state else None
    report: dict[str, Any] = {"home": str(settings.home), "up": shown}
    c = s.client_or_none()
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
        if state.openbao:
            how = "embedded" if state.started.get("openbao") else "external"
            console.print(f"OpenBao    {state.openbao['address']} ({how})")
        if state.gcs_store != "memory":
            console.print(f"Ray state  {_gcs_line(state, settings)}", highlight=False)
        if state.dashboard_url:
            console.print(f"Dashboard  {state.dashboard_url}")
        if state.ray_token_path:
            console.print(f"Ray token  {state.ray_token_path}")
        if state.prometheus_url:
            console.print(f"Prometheus {state.prometheus_url}")
    colour = "green" if health.get("status") == "ok" else "red"
    where = s.transport if c is not None else discovery.api_url(settings)
    console.print(f"API        {where} [{colour}]{health.get('status')}[/]")
    for key in ("database", "temporal", "secrets"):
        if key in health:
            console.print(f"  {key}: {health[key]}")
    if nodes:
        show(nodes_table(nodes, output))
    if health.get("status") != "ok":
        raise typer.Exit(EXIT_UNAVAILABLE)


def _up_state() -> Any:
    from aegis_ray.node.stack import UpState

    settings = Settings()
    state = UpState.load(settings.state_path)
    if state is None or not state.ray_address:
        fail(
            f"nothing is up here ({settings.state_path} not found): run `aegis up` first",
            EXIT_NOT_FOUND,
        )
    return state


def ray_environment(state: Any) -> dict[str, str]:
    """What Ray's CLI needs to reach the cluster `aegis up` runs: its address, the dashboard
    (jobs, state API) and its auth mode with the token file."""
    env = {"RAY_ADDRESS": state.ray_address} | state.auth.env()
    if state.dashboard_url:
        env["RAY_API_SERVER_ADDRESS"] = state.dashboard_url
    return env


@app.command(
    epilog=examples('eval "$(aegis env)" && ray status', 'eval "$(aegis env)" && ray list actors')
)
def env(output: OutputOpt = Output.table) -> None:
    """Print the shell exports with which Ray's own CLI (`ray status`, `ray list actors`,
    `ray job list`) reaches the cluster `aegis up` runs here."""
    values = ray_environment(_up_state())
    if emit(values, output):
        return
    for key, value in values.items():
        print(f"export {key}={shlex.quote(value)}")


@app.command(epilog=examples("aegis dashboard", "aegis dashboard --open"))
def dashboard(
    open_: Annotated[bool, typer.Option("--open", help="open it in a browser here")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Where the Ray dashboard and the Temporal UI are, and the token the dashboard asks for."""
    state = _up_state()
    settings = Settings()
    info = {
        "ray_dashboard": state.dashboard_url or None,
        "ray_token_path": state.ray_token_path if state.ray_auth_mode == "token" else None,
        "temporal_ui": f"http://127.0.0.1:{settings.temporal_ui_port}"
        if state.started.get("temporal")
        else None,
        "api_docs": f"{state.api_url}/docs" if state.api_url else None,
        "prometheus": state.prometheus_url or None,
    }
    if emit(info, output):
        return
    if info["ray_dashboard"]:
        console.print(f"Ray dashboard  {info['ray_dashboard']}", highlight=False)
    else:
        console.print("Ray dashboard  (not started by aegis: see your Ray head)")
    if info["ray_token_path"]:
        console.print(
            f"  log in with the token in {info['ray_token_path']} (cat {info['ray_token_path']})",
            highlight=False,
            soft_wrap=True,
        )
    if info["temporal_ui"]:
        console.print(f"Temporal UI    {info['temporal_ui']}", highlight=False)
    if info["api_docs"]:
        console.print(f"API docs       {info['api_docs']}", highlight=False)
    if info["prometheus"]:
        console.print(f"Prometheus     {info['prometheus']}", highlight=False)
    if open_ and info["ray_dashboard"]:
        import webbrowser

        if not webbrowser.open(info["ray_dashboard"]):
            console.print("(no browser here: open the address above yourself)")
