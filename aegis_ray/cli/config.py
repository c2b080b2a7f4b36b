"""`aegis config validate` and `aegis schema`: configuration files checked without a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from aegis_ray.cli.render import console
from aegis_ray.cli.session import (
    EXIT_BAD_INPUT,
    STDIN,
    examples,
    fail,
    load_or_exit,
    manifest_text,
)
from aegis_ray.core.models.loading import json_schema

app = typer.Typer()
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)


@config_app.command(
    "validate",
    epilog=examples(
        "aegis config validate examples/hello-agent.yaml",
        "aegis config validate cluster_configs/nodes/edge-cpu.yaml",
        "cat agent.yaml | aegis config validate -",
    ),
)
def config_validate(
    file: Annotated[Path, typer.Argument(help="a manifest or NodeConfig file, or - for stdin")],
) -> None:
    """Check an Agent manifest or a NodeConfig (kind decides) without talking to a cluster."""
    doc = load_or_exit(file, manifest_text(file)[0] if file == STDIN else None)
    console.print(f"[green]valid[/] {doc.kind} {doc.metadata.name} ({file})")


@app.command(epilog=examples("aegis schema agent > agent.schema.json", "aegis schema node"))
def schema(kind: Annotated[str, typer.Argument(help="agent or node")]) -> None:
    """Print the JSON Schema of a manifest kind (for editors)."""
    if kind not in ("agent", "node"):
        fail(f"unknown schema {kind!r}: accepted are agent, node", EXIT_BAD_INPUT)
    print(json.dumps(json_schema(kind), indent=2))  # type: ignore[arg-type]
