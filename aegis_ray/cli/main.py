"""The `aegis` command line: one module per command group, sharing `session.Session`.

    lifecycle.py    up, down, status, env, dashboard
    executions.py   submit, list, get, wait, events, logs, cancel, plan
    nodes.py        nodes, node get | start | stop | drain | undrain
    tokens.py       token create
    secrets.py      secret put | list | get | delete
    config.py       config validate, schema
    contexts.py     context list | use | set | delete (several clusters)
    cluster.py      cluster validate | node-type | secret (`ray up` cluster configs)

Exit codes: see session.py. Shell completion: `aegis --install-completion` (bash, zsh, fish).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from aegis_ray import __version__
from aegis_ray.cli import config, contexts, executions, lifecycle, nodes, secrets, tokens
from aegis_ray.cli.cluster import cluster_app
from aegis_ray.cli.session import Api, Session

app = typer.Typer(
    help="aegis: run containerized AI agents on a Ray cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    epilog="Examples:\n\n  aegis up\n\n  aegis submit examples/hello-agent.yaml -f\n\n"
    "  aegis list -o wide\n\n  aegis --context lab nodes",
)


def _version(show: bool) -> None:
    if show:
        print(f"aegis {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    ctx: typer.Context,
    api: Annotated[
        Api | None,
        typer.Option(
            "--api",
            envvar="AEGIS_API",
            help="how commands reach the cluster: rest or grpc (default: the context's, else rest)",
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            envvar="AEGIS_CONTEXT",
            help="a context of the client config file (`aegis context list`)",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", envvar="AEGIS_TIMEOUT", min=0.001, help="seconds per API request (30)"
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file",
            envvar="AEGIS_CA_FILE",
            help="PEM CA that the API's TLS certificate is checked against "
            "(default: the context's, else `aegis up`'s)",
        ),
    ] = None,
    api_url: Annotated[
        list[str] | None,
        typer.Option(
            "--api-url",
            help="the REST API (repeatable, or comma-separated in AEGIS_API_URL): with several, "
            "a request that cannot connect goes to the next",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """aegis: run containerized AI agents on a Ray cluster."""
    if api_url:  # read by the SDK's discovery, like AEGIS_API_URL (which it replaces)
        os.environ["AEGIS_API_URL"] = ",".join(api_url)
    ctx.obj = Session(api=api, context=context, timeout=timeout, ca_file=ca_file)


app.add_typer(config.config_app, name="config")
app.add_typer(contexts.app, name="context")
app.add_typer(nodes.node_app, name="node")
app.add_typer(tokens.app, name="token")
app.add_typer(secrets.app, name="secret")
app.add_typer(cluster_app, name="cluster")
for commands in (lifecycle.app, executions.app, nodes.app, config.app):
    app.add_typer(commands)
