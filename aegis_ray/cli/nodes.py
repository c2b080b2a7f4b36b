"""`aegis nodes` and `aegis node start | stop | drain | undrain`: the machines of a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from aegis_ray.cli.render import Output, console, emit, node_detail, nodes_table, show
from aegis_ray.cli.session import (
    EXIT_AUTH,
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
    OutputOpt,
    call,
    examples,
    fail,
    load_or_exit,
    session,
)
from aegis_ray.settings import Settings

app = typer.Typer()
node_app = typer.Typer(help="Start, stop and drain the nodes of a cluster.", no_args_is_help=True)


@app.command(epilog=examples("aegis nodes", "aegis nodes -o wide", "aegis nodes -o json"))
def nodes(ctx: typer.Context, output: OutputOpt = Output.table) -> None:
    """Nodes of the cluster with their role, tags and free capacity."""
    items = [n.to_json() for n in call(session(ctx).client().nodes).items]
    if not emit(items, output):
        show(nodes_table(items, output))


@node_app.command("get", epilog=examples("aegis node get edge-gpu-1", "aegis node get n1 -o yaml"))
def node_get(ctx: typer.Context, node_id: str, output: OutputOpt = Output.table) -> None:
    """One node: role, status, capacity used and total, heartbeat, tags."""
    node = call(session(ctx).client().node, node_id).to_json()
    if not emit(node, output):
        show(node_detail(node))


def read_node_config(path: Path) -> Any:
    doc = load_or_exit(path)
    if doc.kind != "NodeConfig":
        fail(f"{path}: kind: expected NodeConfig (got {doc.kind!r})", EXIT_BAD_INPUT)
    return doc


@node_app.command(
    "start",
    epilog=examples(
        "aegis node start --config cluster_configs/nodes/orchestrator.yaml",
        "aegis node start --config edge-cpu.yaml --join-token-file join.token",
        "AEGIS_JOIN_TOKEN=$(cat join.token) aegis node start --config edge-cpu.yaml",
        "AEGIS_JOIN_TOKEN=$(cat join.token) aegis node start --config orchestrator-2.yaml",
    ),
)
def node_start(
    ctx: typer.Context,
    config: Annotated[Path, typer.Option(help="this node's NodeConfig")],
    join_token: Annotated[
        str | None,
        typer.Option(
            envvar="AEGIS_JOIN_TOKEN",
            hidden=True,
            help="refused on the command line (`ps` shows it): AEGIS_JOIN_TOKEN only",
        ),
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
    join_node_type: Annotated[
        list[str] | None,
        typer.Option(
            help="heads: node types whose node ids (TYPE-...) the join secret admits, each id"
            " once (repeatable; default: the edge NodeConfigs beside --config)"
        ),
    ] = None,
) -> None:
    """Start this machine's node: orchestrator or hybrid = Ray head + control plane;
    edge = a Ray worker node that registers with the orchestrator named in its config;
    orchestrator with a join token = another orchestrator joining the running cluster."""
    from aegis_ray.cli.cluster import instance_config, ray_args_with_env, read_secret_file
    from aegis_ray.node.services import ServiceConfigError
    from aegis_ray.node.stack import JoinRefused, join_edge
    from aegis_ray.node.stack import up as stack_up

    source = ctx.get_parameter_source("join_token")  # typer bundles its own click: by name
    if source is not None and source.name == "COMMANDLINE":
        fail(
            "--join-token: a secret on the command line is visible to every user (`ps`); "
            "use --join-token-file FILE (mode 0600) or the environment variable AEGIS_JOIN_TOKEN",
            EXIT_BAD_INPUT,
        )
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
    from aegis_ray.node.stack import credential_path

    known = credential_path(settings, node.spec.node.id).exists()
    # A second or third orchestrator joins the running cluster as an edge does.
    joins = kind == "edge" or (kind == "orchestrator" and (join_token is not None or known))
    if kind == "edge" and not join_token and not known:
        fail(
            "an edge node needs a join token the first time: --join-token-file or "
            "AEGIS_JOIN_TOKEN (issue one on the orchestrator with "
            f"`aegis token create --join --node-id {node.spec.node.id}`)",
            EXIT_AUTH,
        )
    join_types = join_node_type or (edge_types_beside(config) if join_secret else [])
    if join_secret and not join_types:
        fail(
            "--join-secret-file: no node types for it to admit (no edge NodeConfig beside "
            f"{config}); name them with --join-node-type",
            EXIT_BAD_INPUT,
        )
    try:
        if joins:
            state = join_edge(settings, node, join_token, say, ray_args=ray_arg or [])
            console.print(f"[green]{kind} {state.node_id} joined[/] {state.ray_address}")
        else:
            head = stack_up(
                settings,
                node,
                say,
                ray_args=ray_arg,
                join_secret=join_secret,
                join_node_types=join_types,
            )
            console.print(f"[green]{kind} {node.spec.node.id} up[/]  API {head.api_url}")
    except JoinRefused as err:
        fail(str(err), EXIT_AUTH if "HTTP 401" in str(err) or "HTTP 403" in str(err) else 3)
    except ServiceConfigError as err:  # refused before anything started
        fail(f"{config}: {err}", EXIT_BAD_INPUT)
    except (RuntimeError, TimeoutError, OSError) as err:
        fail(f"node start failed: {err}", EXIT_UNAVAILABLE)


@node_app.command(
    "stop", epilog=examples("aegis node stop --config cluster_configs/nodes/edge-cpu.yaml")
)
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
    from aegis_ray.node.stack import EdgeState

    # Edges, and orchestrators that joined a cluster (their state file says so).
    if node.spec.node.type.value == "edge" or EdgeState.load(settings, node.spec.node.id):
        stopped = stop_edge(settings, node.spec.node.id)
        console.print("stopped" if stopped else "nothing was running")
        return
    stack_down(settings, lambda s: console.print(f"[dim]·[/] stopping {s}"))


@node_app.command("drain", epilog=examples("aegis node drain edge-gpu-1"))
def node_drain(ctx: typer.Context, node_id: str) -> None:
    """Give a node no new work; what runs there finishes."""
    call(session(ctx).client().drain, node_id)
    console.print(f"{node_id} draining")


@node_app.command("undrain", epilog=examples("aegis node undrain edge-gpu-1"))
def node_undrain(ctx: typer.Context, node_id: str) -> None:
    """Make a drained node take new work again."""
    call(session(ctx).client().undrain, node_id)
    console.print(f"{node_id} ready")


def edge_types_beside(config: Path) -> list[str]:
    """The ids of the edge NodeConfigs in the folder of `config` (the cluster configs ship
    them together): the node types a `ray up` join secret admits."""
    from aegis_ray.core.models.loading import ManifestError, parse_node_config

    found = []
    for path in sorted(config.resolve().parent.glob("*.yaml")):
        try:
            other = parse_node_config(path.read_text(), str(path))
        except (ManifestError, OSError):  # not a NodeConfig: not a node type
            continue
        if other.spec.node.type.value == "edge":
            found.append(other.spec.node.id)
    return found
