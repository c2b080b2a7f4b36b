"""`aegis token create`: API and join tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from aegis_ray.cli.render import Output, emit
from aegis_ray.cli.session import OutputOpt, call, examples, session

app = typer.Typer(help="Issue API and join tokens.", no_args_is_help=True)


@app.command(
    "create",
    epilog=examples("aegis token create --join", "aegis token create --ttl 86400 --description ci"),
)
def token_create(
    ctx: typer.Context,
    join: Annotated[bool, typer.Option("--join", help="a join token for nodes")] = False,
    ttl: Annotated[float, typer.Option(help="lifetime in seconds")] = 3600.0,
    description: str = "",
    output: OutputOpt = Output.table,
) -> None:
    """Issue a token (admin only): `--join` for nodes, else a user token for the API."""
    res = call(
        session(ctx).client().create_token,
        role="join" if join else "user",
        ttl_s=ttl,
        description=description,
    ).to_json()
    if not emit(res, output):
        print(res["token"])
