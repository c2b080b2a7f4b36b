"""`aegis token`: issue, list and revoke API and join tokens; rotate the admin token and the
cluster join secret."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from aegis_ray.cli.render import Column, Output, age, emit, short_id, show, table
from aegis_ray.cli.session import EXIT_BAD_INPUT, OutputOpt, call, examples, fail, session

app = typer.Typer(help="Issue, list and revoke tokens.", no_args_is_help=True)

TOKEN_COLUMNS = (
    Column("ID"),
    Column("ROLE"),
    Column("TENANT"),
    Column("NODE"),
    Column("AGE"),
    Column("EXPIRES"),
    Column("STATE"),
    Column("DESCRIPTION", flexible=True),
)


@app.command(
    "create",
    epilog=examples(
        "aegis token create --join --node-id edge-1            # one node, once, 10 minutes",
        "aegis token create --ttl 86400 --description ci",
        "aegis token create --eternal --description monitoring  # never expires: say so",
    ),
)
def token_create(
    ctx: typer.Context,
    join: Annotated[bool, typer.Option("--join", help="a join token for one node")] = False,
    node_id: Annotated[
        str | None, typer.Option(help="--join: the node id it is for (required)")
    ] = None,
    node_type: Annotated[
        str | None, typer.Option(help="--join: the node's type (edge, hybrid, orchestrator)")
    ] = None,
    ttl: Annotated[
        float | None,
        typer.Option(help="lifetime in seconds (default: join 600, user 3600)"),
    ] = None,
    eternal: Annotated[
        bool, typer.Option("--eternal", help="a user token that never expires")
    ] = False,
    description: str = "",
    output: OutputOpt = Output.table,
) -> None:
    """Issue a token (admin only): `--join --node-id ID` for one node to register once, else
    a user token for the API."""
    if join and not node_id:
        fail("--join: give the node it is for with --node-id", EXIT_BAD_INPUT)
    res = call(
        session(ctx).client().create_token,
        role="join" if join else "user",
        ttl_s=ttl,
        description=description,
        node_id=node_id,
        node_type=node_type,
        eternal=eternal,
    ).to_json()
    if not emit(res, output):
        print(res["token"])


def _state(t: dict[str, Any]) -> str:
    if t.get("revoked_at"):
        return "[red]revoked[/]"
    if t.get("redeemed_at"):
        return "used"
    return "[green]active[/]"


def _expires(t: dict[str, Any]) -> str:
    when = t.get("expires_at")
    if not when:
        return "never"
    left = age(when)
    return f"in {left.removeprefix('-')}" if left.startswith("-") else f"{left} ago"


@app.command("list", epilog=examples("aegis token list", "aegis token list --all -o json"))
def token_list(
    ctx: typer.Context,
    all_: Annotated[
        bool, typer.Option("--all", help="also revoked, used and expired tokens")
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Tokens (admin only): id, role, tenant, node, age, expiry and state; never a secret."""
    page = call(session(ctx).client().tokens, revoked=all_).to_json()
    if emit(page, output):
        return
    rows = [
        [
            short_id(t["id"], output),
            t["role"] + (" (secret)" if t["role"] == "join" and t.get("node_types") else ""),
            escape(t["tenant_id"]),
            escape(t.get("node_id") or ",".join(t.get("node_types") or [])),
            age(t["created_at"]),
            _expires(t),
            _state(t),
            escape(t.get("description") or ""),
        ]
        for t in page["items"]
    ]
    show(table(TOKEN_COLUMNS, rows, output))


@app.command("revoke", epilog=examples("aegis token revoke 7a3f2feb-…"))
def token_revoke(ctx: typer.Context, token_id: str, output: OutputOpt = Output.table) -> None:
    """Revoke a token by its id (admin only): it stops working on every orchestrator within
    a second. A node whose credential is revoked may register again with a new join token."""
    res = call(session(ctx).client().revoke_token, token_id).to_json()
    if not emit(res, output):
        print(f"revoked {res['id']}" if res["revoked"] else f"{res['id']} was revoked already")


@app.command(
    "rotate-admin",
    epilog=examples("aegis token rotate-admin        # rewrites AEGIS_HOME/admin.token"),
)
def token_rotate_admin(
    ctx: typer.Context,
    write: Annotated[
        Path | None,
        typer.Option(help="write the new token here (0600; default: AEGIS_HOME/admin.token)"),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """A new admin token; every earlier admin token stops working at once."""
    import os

    from aegis_ray.adapters.files import write_private
    from aegis_ray.settings import Settings

    res = call(session(ctx).client().rotate_admin_token).to_json()
    default = Settings().admin_token_path
    # `aegis up`'s token file, unless the token in use came from elsewhere.
    ours = default.exists() and "AEGIS_API_TOKEN" not in os.environ
    target = write or (default if ours else None)
    if target is not None:
        write_private(target, res["token"])
    if emit({k: v for k, v in res.items() if k != "token" or target is None}, output):
        return
    print(f"new admin token {res['id']}" + (f" written to {target}" if target else ""))
    if target is None:
        print(res["token"])


@app.command(
    "rotate-join-secret",
    epilog=examples(
        "aegis cluster secret ~/.aegis/cluster-join-secret --force",
        "aegis token rotate-join-secret ~/.aegis/cluster-join-secret   # then `ray up` again",
    ),
)
def token_rotate_join_secret(
    ctx: typer.Context,
    secret_file: Annotated[Path, typer.Argument(help="the new secret (0600 file)")],
    node_type: Annotated[
        list[str] | None,
        typer.Option(help="node types it admits (default: those of the secret it replaces)"),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Replace the cluster join secret of `ray up` (admin only): new edges must present the
    new one; the earlier secrets stop working."""
    from aegis_ray.cli.cluster import read_secret_file

    secret = read_secret_file(secret_file, "SECRET_FILE")
    res = call(session(ctx).client().rotate_join_secret, secret, node_types=node_type).to_json()
    if not emit(res, output):
        print(f"join secret {res['id']} admits node types {', '.join(res['node_types'] or [])}")
