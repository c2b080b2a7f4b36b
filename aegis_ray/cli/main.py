"""The `aegis` command line.

Exit codes: 0 success; 1 the execution FAILED; 124 it TIMED_OUT; 130 it was CANCELLED;
2 bad input (invalid manifest, unschedulable); 3 the cluster or one of its services is
unavailable; 4 not found (also an id that is no execution id); 5 not authenticated.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from aegis_ray.cli.cluster import cluster_app
from aegis_ray.cli.render import (
    Output,
    console,
    emit,
    err_console,
    execution_detail,
    executions_table,
    nodes_table,
    plan_table,
    state_text,
)
from aegis_ray.core.models.loading import ManifestError, json_schema, load_file, parse_node_config
from aegis_ray.sdk.rest import AegisClient, ApiError, ApiUnreachable
from aegis_ray.settings import Settings

EXIT_BY_STATE = {"SUCCEEDED": 0, "FAILED": 1, "TIMED_OUT": 124, "CANCELLED": 130}
EXIT_BAD_INPUT, EXIT_UNAVAILABLE, EXIT_NOT_FOUND, EXIT_AUTH = 2, 3, 4, 5
TERMINAL = set(EXIT_BY_STATE)

app = typer.Typer(
    help="aegis: run containerized AI agents on a Ray cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
node_app = typer.Typer(help="Start, stop and drain the nodes of a cluster.", no_args_is_help=True)
app.add_typer(node_app, name="node")
token_app = typer.Typer(help="Issue API and join tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(cluster_app, name="cluster")

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table (default), json or yaml")]


class Transport(StrEnum):
    rest = "rest"
    grpc = "grpc"


# Chosen once per invocation by the global --api option (or AEGIS_API).
_transport = {"api": Transport.rest}


@app.callback()
def _global_options(
    api: Annotated[
        Transport,
        typer.Option(
            "--api", envvar="AEGIS_API", help="how commands reach the cluster: rest or grpc"
        ),
    ] = Transport.rest,
) -> None:
    """aegis: run containerized AI agents on a Ray cluster."""
    _transport["api"] = api


def redact(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of `aegis up`'s state fit to print: the database password masked."""
    out = dict(state)
    url = out.get("database_url") or ""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if sep and at and ":" in creds:
        out["database_url"] = f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return out


def fail(message: str, code: int) -> NoReturn:
    err_console.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def client() -> Any:
    """An API client over the chosen transport (same methods and results either way)."""
    settings = Settings()
    token = settings.api_token
    if token is None and settings.admin_token_path.exists():
        token = settings.admin_token_path.read_text().strip()
    if token is None:
        fail(
            f"no API token: run `aegis up` (it writes {settings.admin_token_path}) "
            "or set AEGIS_API_TOKEN",
            EXIT_AUTH,
        )
    if _transport["api"] == Transport.grpc:
        from aegis_ray.sdk.grpc import GrpcAegisClient

        return GrpcAegisClient(grpc_address(settings), token)
    return AegisClient(api_url(settings), token)


def api_url(settings: Settings) -> str:
    """AEGIS_API_URL if set, else where `aegis up` / `aegis node start` put the API here."""
    if settings.api_url:
        return settings.api_url
    from aegis_ray.node.stack import UpState

    state = UpState.load(settings.state_path)
    return state.api_url if state and state.api_url else settings.api_base_url


def grpc_address(settings: Settings) -> str:
    """AEGIS_GRPC_ADDRESS if set, else where `aegis up` / `aegis node start` serve gRPC here."""
    if settings.grpc_address:
        return settings.grpc_address
    from aegis_ray.node.stack import UpState

    state = UpState.load(settings.state_path)
    if state and state.grpc_address:
        return state.grpc_address
    return f"{settings.api_host}:{settings.grpc_port}"


def _where(err: ApiError) -> str:
    code = err.body.get("grpc_code")
    return f"gRPC {code}" if code else f"HTTP {err.status}"


def call(fn: Any, *args: Any, **kw: Any) -> Any:
    """Run one API call, turning its failures into a message and a meaningful exit code."""
    try:
        return fn(*args, **kw)
    except (ApiUnreachable, ApiError) as err:
        refused(err)


def stream(items: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Items of a watch stream, its failures handled like `call`'s."""
    try:
        yield from items
    except (ApiUnreachable, ApiError) as err:
        refused(err)


def refused(err: ApiUnreachable | ApiError) -> NoReturn:
    """Print why a call failed and exit with the matching code."""
    if isinstance(err, ApiUnreachable):
        fail(f"{err}\nIs the cluster up? Try `aegis up` or `aegis status`.", EXIT_UNAVAILABLE)
    body = err.body
    if err.status == 422 and body.get("error") == "invalid_manifest":
        for p in body.get("problems", []):
            err_console.print(
                f"[red]invalid:[/] {body.get('source')}: {p['path'] or '(document)'}: "
                f"{p['message']} (got {p['value']!r})",
                highlight=False,
            )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if err.status == 422 and body.get("error") == "unschedulable":
        if "plan" in body:
            err_console.print(plan_table(body["plan"]))
        fail(f"rejected: {body['message']}", EXIT_BAD_INPUT)
    code = {401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND, 503: EXIT_UNAVAILABLE}.get(
        err.status, EXIT_BAD_INPUT if err.status < 500 else EXIT_UNAVAILABLE
    )
    fail(f"{err} ({_where(err)})", code)


def read_manifest(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        fail(f"cannot read {path}: {err.strerror}", EXIT_BAD_INPUT)


def load_or_exit(path: Path) -> Any:
    """Load and validate a manifest or NodeConfig; on failure print every problem and exit 2.

    Used before a manifest travels too: the server validates again with the same model.
    """
    try:
        return load_file(path)
    except ManifestError as err:
        for line in str(err).splitlines():
            err_console.print(f"[red]invalid:[/] {line}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except OSError as err:
        fail(f"cannot read {path}: {err.strerror}", EXIT_BAD_INPUT)


# ---------------------------------------------------------------- node lifecycle


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
            node = parse_node_config(read_manifest(config), source=str(config))
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
def status(output: OutputOpt = Output.table) -> None:
    """What is running: Ray, API, PostgreSQL, Temporal, nodes."""
    from aegis_ray.node.stack import UpState

    settings = Settings()
    state = UpState.load(settings.state_path)
    shown = redact(state.__dict__) if state else None
    report: dict[str, Any] = {"home": str(settings.home), "up": shown}
    c = client() if settings.admin_token_path.exists() or settings.api_token else None
    health: dict[str, Any] = {"status": "unreachable"}
    nodes: list[dict[str, Any]] = []
    if c is not None:
        try:
            health = c.health()
            nodes = c.nodes()["items"]
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
        f"gRPC {grpc_address(settings)}"
        if _transport["api"] == Transport.grpc
        else api_url(settings)
    )
    console.print(f"API        {where} [{colour}]{health.get('status')}[/]")
    for key in ("database", "temporal"):
        if key in health:
            console.print(f"  {key}: {health[key]}")
    if nodes:
        console.print(nodes_table(nodes))
    if health.get("status") != "ok":
        raise typer.Exit(EXIT_UNAVAILABLE)


# ---------------------------------------------------------------- executions


@app.command()
def submit(
    file: Path,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream state and logs")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Submit an agent manifest; with --follow, exit with the execution's status."""
    load_or_exit(file)
    rec = call(client().submit, read_manifest(file), source=str(file))
    if not follow:
        if not emit(rec, output):
            console.print(f"submitted [bold]{rec['id']}[/] {state_text(rec['state'])}")
            if rec.get("waiting"):
                console.print(f"[yellow]{rec['waiting']}[/]")
        return
    if output == Output.table:
        console.print(f"submitted [bold]{rec['id']}[/]")
    raise typer.Exit(_follow(rec["id"], output))


def _follow(execution_id: str, output: Output) -> int:
    """Print state changes and log lines as they happen; return the exit code for the end state."""
    c = client()
    quiet = output != Output.table
    state = "PENDING"
    with console.status("waiting for placement", spinner="dots") as spinner:
        for item in stream(c.watch(execution_id)):
            if "end" in item:
                break
            if quiet:
                continue
            if ev := item.get("event"):
                state = ev.get("to_state") or state
                message = escape(ev.get("message") or "")
                spinner.update(f"{state.lower()}: {message}")
                console.print(
                    f"[dim]{ev['ts'][11:23]}[/] {state_text(ev.get('to_state') or '')}"
                    f" {message}".rstrip(),
                    highlight=False,
                )
            elif ln := item.get("log"):
                # Agent output is text, never markup.
                style = "red" if ln["stream"] == "stderr" else None
                console.print(ln["line"], style=style, highlight=False, markup=False)
    rec = call(c.get, execution_id)
    if not emit(rec, output):
        console.print(
            f"{state_text(rec['state'])} exit code {rec.get('exit_code')}"
            + (f" — {escape(rec['reason'])}" if rec.get("reason") else "")
        )
    return EXIT_BY_STATE.get(rec["state"], 1)


@app.command("list")
def list_(
    state: Annotated[list[str] | None, typer.Option(help="filter by state (repeatable)")] = None,
    name: Annotated[str | None, typer.Option(help="filter by agent name")] = None,
    limit: int = 50,
    output: OutputOpt = Output.table,
) -> None:
    """List executions, newest first."""
    page = call(client().list, states=state, name=name, limit=limit)
    if not emit(page["items"], output):
        console.print(executions_table(page["items"]))


@app.command()
def get(execution_id: str, output: OutputOpt = Output.table) -> None:
    """Show one execution with its attempts."""
    rec = call(client().get, execution_id)
    if not emit(rec, output):
        console.print(execution_detail(rec))


@app.command()
def events(execution_id: str, output: OutputOpt = Output.table) -> None:
    """Show an execution's state changes and notes."""
    items = call(client().events, execution_id)["items"]
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
    execution_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Print an execution's output (stdout and stderr, in order)."""
    c = client()
    if follow:
        for item in stream(c.watch(execution_id, events=False)):
            if row := item.get("log"):
                print(json.dumps(row) if output != Output.table else row["line"], flush=True)
        return
    if output == Output.table:
        after = 0
        while items := call(c.logs, execution_id, after=after)["items"]:
            for ln in items:
                print(ln["line"])
            after = items[-1]["id"]
        return
    rows, after = [], 0
    while items := call(c.logs, execution_id, after=after)["items"]:
        rows += items
        after = items[-1]["id"]
    emit(rows, output)


@app.command()
def cancel(execution_id: str, output: OutputOpt = Output.table) -> None:
    """Cancel an execution: its container is stopped and it ends CANCELLED."""
    res = call(client().cancel, execution_id)
    if not emit(res, output):
        console.print(f"cancel requested for {execution_id}")


@app.command()
def plan(file: Path, output: OutputOpt = Output.table) -> None:
    """Dry run: which nodes could take this manifest, and why the others cannot."""
    load_or_exit(file)
    res = call(client().plan, read_manifest(file), source=str(file))
    if not emit(res, output):
        console.print(plan_table(res))
    raise typer.Exit(0 if res["feasible"] else EXIT_BAD_INPUT)


@app.command()
def nodes(output: OutputOpt = Output.table) -> None:
    """Nodes of the cluster with their role, tags and free capacity."""
    items = call(client().nodes)["items"]
    if not emit(items, output):
        console.print(nodes_table(items))


# ---------------------------------------------------------------- nodes and tokens


def read_node_config(path: Path) -> Any:
    doc = load_or_exit(path)
    if doc.kind != "NodeConfig":
        fail(f"{path}: kind: expected NodeConfig (got {doc.kind!r})", EXIT_BAD_INPUT)
    return doc


@node_app.command("start")
def node_start(
    config: Annotated[Path, typer.Option(help="this node's NodeConfig")],
    join_token: Annotated[
        str | None, typer.Option(envvar="AEGIS_JOIN_TOKEN", help="edge nodes: a join token")
    ] = None,
    ray_arg: Annotated[
        list[str] | None,
        typer.Option(
            help="extra `ray start` argument (repeatable), e.g. ports; AEGIS_RAY_ARGS adds more"
        ),
    ] = None,
    node_id: Annotated[
        str | None,
        typer.Option(
            help="this instance's node id: {id} = the config's, {host} = this host's name"
        ),
    ] = None,
    orchestrator_url: Annotated[
        str | None, typer.Option(help="edge nodes: overrides spec.runtime.orchestrator_url")
    ] = None,
    join_token_file: Annotated[
        Path | None, typer.Option(help="edge nodes: read the join token from this file")
    ] = None,
    join_secret_file: Annotated[
        Path | None,
        typer.Option(help="heads: accept this file's pre-shared secret as a join token (ray up)"),
    ] = None,
) -> None:
    """Start this machine's node: orchestrator or hybrid = Ray head + control plane;
    edge = a Ray worker node that registers with the orchestrator named in its config."""
    from aegis_ray.cli.cluster import instance_config, ray_args_with_env, read_secret_file
    from aegis_ray.node.stack import JoinRefused, join_edge
    from aegis_ray.node.stack import up as stack_up

    node = instance_config(
        read_node_config(config), config, node_id=node_id, orchestrator_url=orchestrator_url
    )
    if join_token_file is not None:
        join_token = read_secret_file(join_token_file, "--join-token-file")
    join_secret = join_secret_file and read_secret_file(join_secret_file, "--join-secret-file")
    ray_arg = ray_args_with_env(ray_arg)
    settings = Settings()
    # spec.api places the API unless AEGIS_API_HOST / AEGIS_API_PORT / AEGIS_GRPC_PORT say.
    api = node.spec.api
    for name, value in (
        ("api_host", api.bind),
        ("api_port", api.rest_port),
        ("grpc_port", api.grpc_port),
    ):
        if name not in settings.model_fields_set:
            setattr(settings, name, value)

    def say(step: str) -> None:
        console.print(f"[dim]·[/] {step}", highlight=False)

    kind = node.spec.node.type.value
    if kind == "edge" and not join_token:
        fail(
            "an edge node needs a join token: --join-token or AEGIS_JOIN_TOKEN "
            "(issue one on the orchestrator with `aegis token create --join`)",
            EXIT_AUTH,
        )
    try:
        if kind == "edge":
            assert join_token is not None
            state = join_edge(settings, node, join_token, say, ray_args=ray_arg or [])
            console.print(f"[green]edge {state.node_id} joined[/] {state.ray_address}")
        else:
            head = stack_up(settings, node, say, ray_args=ray_arg, join_secret=join_secret)
            console.print(f"[green]{kind} {node.spec.node.id} up[/]  API {head.api_url}")
    except JoinRefused as err:
        fail(str(err), EXIT_AUTH if "HTTP 401" in str(err) or "HTTP 403" in str(err) else 3)
    except (RuntimeError, TimeoutError, OSError) as err:
        fail(f"node start failed: {err}", EXIT_UNAVAILABLE)


@node_app.command("stop")
def node_stop(
    config: Annotated[Path, typer.Option(help="this node's NodeConfig")],
    node_id: Annotated[str | None, typer.Option(help="as given to `aegis node start`")] = None,
) -> None:
    """Stop this machine's node (what `aegis node start` started for that config)."""
    from aegis_ray.cli.cluster import instance_config
    from aegis_ray.node.stack import down as stack_down
    from aegis_ray.node.stack import stop_edge

    node = instance_config(read_node_config(config), config, node_id=node_id, orchestrator_url=None)
    settings = Settings()
    if node.spec.node.type.value == "edge":
        stopped = stop_edge(settings, node.spec.node.id)
        console.print("stopped" if stopped else "nothing was running")
        return
    stack_down(settings, lambda s: console.print(f"[dim]·[/] stopping {s}"))


@node_app.command("drain")
def node_drain(node_id: str) -> None:
    """Give a node no new work; what runs there finishes."""
    call(client().drain, node_id)
    console.print(f"{node_id} draining")


@node_app.command("undrain")
def node_undrain(node_id: str) -> None:
    """Make a drained node take new work again."""
    call(client().undrain, node_id)
    console.print(f"{node_id} ready")


@token_app.command("create")
def token_create(
    join: Annotated[bool, typer.Option("--join", help="a join token for nodes")] = False,
    ttl: Annotated[float, typer.Option(help="lifetime in seconds")] = 3600.0,
    description: str = "",
    output: OutputOpt = Output.table,
) -> None:
    """Issue a token (admin only): `--join` for nodes, else a user token for the API."""
    res = call(
        client().create_token, role="join" if join else "user", ttl_s=ttl, description=description
    )
    if not emit(res, output):
        print(res["token"])


# ---------------------------------------------------------------- configuration


@config_app.command("validate")
def config_validate(file: Path) -> None:
    """Check an Agent manifest or a NodeConfig (kind decides) without talking to a cluster."""
    doc = load_or_exit(file)
    console.print(f"[green]valid[/] {doc.kind} {doc.metadata.name} ({file})")


@app.command()
def schema(kind: Annotated[str, typer.Argument(help="agent or node")]) -> None:
    """Print the JSON Schema of a manifest kind (for editors)."""
    if kind not in ("agent", "node"):
        fail(f"unknown schema {kind!r}: accepted are agent, node", EXIT_BAD_INPUT)
    print(json.dumps(json_schema(kind), indent=2))  # type: ignore[arg-type]


def main() -> None:  # pragma: no cover - console entry for `python -m`
    app()
    sys.exit(0)
