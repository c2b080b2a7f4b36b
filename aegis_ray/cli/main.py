"""The `aegis` command line: one module per command group, sharing `session.Session`.

    lifecycle.py    up, down, status
    executions.py   submit, list, get, events, logs, cancel, plan
    nodes.py        nodes, node start | stop | drain | undrain
    tokens.py       token create
    config.py       config validate, schema
    cluster.py      cluster validate | node-type | secret (`ray up` cluster configs)

Exit codes: see session.py.
"""

from __future__ import annotations

from typing import Annotated

import typer

from aegis_ray.cli import config, executions, lifecycle, nodes, tokens
from aegis_ray.cli.cluster import cluster_app
from aegis_ray.cli.session import Api, Session

app = typer.Typer(
    help="aegis: run containerized AI agents on a Ray cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    api: Annotated[
        Api,
        typer.Option(
            "--api", envvar="AEGIS_API", help="how commands reach the cluster: rest or grpc"
        ),
    ] = Api.rest,
) -> None:
    """aegis: run containerized AI agents on a Ray cluster."""
    ctx.obj = Session(api=api)


app.add_typer(config.config_app, name="config")
app.add_typer(nodes.node_app, name="node")
app.add_typer(tokens.app, name="token")
app.add_typer(cluster_app, name="cluster")
for commands in (lifecycle.app, executions.app, nodes.app, config.app):
    app.add_typer(commands)
