"""`aegis context list | use | set | delete`: named clusters in the client config file
(sdk/contexts.py), like kubectl's contexts. `aegis --context NAME ...` uses one for one command."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from aegis_ray.cli.render import Column, Output, emit, show, table
from aegis_ray.cli.session import EXIT_BAD_INPUT, EXIT_NOT_FOUND, OutputOpt, examples, fail
from aegis_ray.sdk import contexts
from aegis_ray.sdk.contexts import ClientConfig, Context, ContextError

app = typer.Typer(
    help="Named clusters (API URL, token file, transport) in the client config file.",
    no_args_is_help=True,
)


def _load() -> ClientConfig:
    try:
        return contexts.load()
    except ContextError as err:
        fail(str(err), EXIT_BAD_INPUT)


@app.command("list", epilog=examples("aegis context list", "aegis context list -o yaml"))
def list_(output: OutputOpt = Output.table) -> None:
    """Every context; the current one is marked *."""
    config = _load()
    if emit(config.model_dump(by_alias=True, exclude_none=True), output):
        return
    columns = [Column(h) for h in ("", "NAME", "API", "REST", "GRPC")] + [Column("TOKEN FILE")]
    rows = [
        [
            "*" if name == config.current_context else "",
            escape(name),
            c.api or "",
            escape(c.api_url or ""),
            escape(c.grpc_address or ""),
            escape(c.token_file or ""),
        ]
        for name, c in sorted(config.contexts.items())
    ]
    show(table(columns, rows, output))
    if not rows:
        print(f"no contexts in {contexts.config_path()}: add one with `aegis context set NAME`")


@app.command("use", epilog=examples("aegis context use lab"))
def use(name: str) -> None:
    """Make NAME the current context (every command uses it unless --context says another)."""
    config = _load()
    if name not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none"
        fail(f"{contexts.config_path()}: no context {name!r} (contexts: {known})", EXIT_NOT_FOUND)
    config.current_context = name
    path = contexts.save(config)
    print(f"current context: {name} ({path})")


@app.command(
    "set",
    epilog=examples(
        "aegis context set lab --api-url http://10.0.0.5:8080 --token-file ~/lab.token",
        "aegis context set lab --api grpc --grpc-address 10.0.0.5:50051",
    ),
)
def set_(
    name: str,
    api_url: Annotated[str | None, typer.Option(help="the REST API, http://host:8080")] = None,
    grpc_address: Annotated[str | None, typer.Option(help="the gRPC API, host:50051")] = None,
    token_file: Annotated[str | None, typer.Option(help="a file holding the API token")] = None,
    api: Annotated[
        str | None, typer.Option("--api", help="the transport commands use: rest or grpc")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds per request")] = None,
    ca_file: Annotated[
        str | None, typer.Option(help="PEM CA the API's TLS certificate is checked against")
    ] = None,
    use: Annotated[bool, typer.Option("--use", help="and make it the current context")] = False,
) -> None:
    """Create or change a context (only the options given change)."""
    config = _load()
    given = {
        "api_url": api_url,
        "grpc_address": grpc_address,
        "token_file": token_file,
        "api": api,
        "timeout": timeout,
        "ca_file": ca_file,
    }
    current = config.contexts.get(name, Context()).model_dump()
    try:
        config.contexts[name] = Context.model_validate(
            current | {k: v for k, v in given.items() if v is not None}
        )
    except ValueError as err:
        fail(f"context {name}: {err}", EXIT_BAD_INPUT)
    if use or config.current_context is None:
        config.current_context = name
    path = contexts.save(config)
    print(
        f"context {name} saved in {path}" + (" (current)" if config.current_context == name else "")
    )


@app.command("delete", epilog=examples("aegis context delete old-lab"))
def delete(name: str) -> None:
    """Remove a context."""
    config = _load()
    if config.contexts.pop(name, None) is None:
        fail(f"{contexts.config_path()}: no context {name!r}", EXIT_NOT_FOUND)
    if config.current_context == name:
        config.current_context = None
    contexts.save(config)
    print(f"context {name} deleted")
