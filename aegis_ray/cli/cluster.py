"""`aegis cluster`: `ray up` cluster configs (validate, node-type snippets) and join secrets.

Also the small helpers `aegis node start/stop` use on nodes the cluster launcher starts: a node
id per instance, the orchestrator URL from the launcher, secrets read from shipped files.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, NoReturn

import typer
import yaml
from rich.markup import escape

from aegis_ray.cli.render import console, err_console
from aegis_ray.cluster_config.validate import (
    ClusterConfigError,
    instance_node_id,
    node_type_snippet,
    validate_cluster_file,
    with_overrides,
)
from aegis_ray.core.models.loading import ManifestError, load_file
from aegis_ray.core.models.node import NodeConfig
from aegis_ray.settings import Settings

EXIT_BAD_INPUT = 2
MIN_SECRET_CHARS = 16  # what the token store accepts for a pre-shared secret

cluster_app = typer.Typer(
    help="`ray up` cluster configs: validate them, print node types, make join secrets.",
    no_args_is_help=True,
)


def _invalid(lines: str) -> NoReturn:
    for line in lines.splitlines():
        err_console.print(
            f"[red]invalid:[/] {escape(line)}", highlight=False, soft_wrap=True, emoji=False
        )
    raise typer.Exit(EXIT_BAD_INPUT)


@cluster_app.command(
    "validate", epilog="Examples:\n\n  aegis cluster validate cluster_configs/aws.yaml"
)
def validate(file: Path) -> None:
    """Check a `ray up` cluster YAML offline: Ray's own schema and launcher checks, then aegis's
    (node types vs NodeConfigs, resource and label names, roles, ports, start commands)."""
    try:
        # Relative file_mounts resolve against the working directory, as for `ray up`.
        summary = validate_cluster_file(file, Path.cwd())
    except ClusterConfigError as err:
        _invalid(str(err))
    for warning in summary.warnings:
        err_console.print(
            f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True, emoji=False
        )
    console.print(f"[green]valid[/] cluster config {file} (provider {summary.provider})")
    for n in summary.nodes:
        kind = "head  " if n.head else "worker"
        scale = (
            "" if n.head or summary.provider == "local" else f"  {n.min_workers}-{n.max_workers}"
        )
        console.print(f"  {kind} {n.name}: {n.role} ({n.node_config}){scale}", highlight=False)


@cluster_app.command(
    "node-type",
    epilog="Examples:\n\n  aegis cluster node-type cluster_configs/nodes/edge-gpu.yaml",
)
def node_type(
    config: Annotated[Path, typer.Argument(help="a NodeConfig")],
    name: Annotated[str | None, typer.Option(help="node type name (default: the file's)")] = None,
) -> None:
    """Print the `resources` and `labels` of a cluster-YAML node type that runs this NodeConfig."""
    cfg = _node_config(config)
    print(yaml.safe_dump({name or config.stem: node_type_snippet(cfg)}, sort_keys=False), end="")


@cluster_app.command(
    "secret", epilog="Examples:\n\n  aegis cluster secret ~/.aegis/cluster-join-secret"
)
def secret(
    file: Annotated[
        Path | None, typer.Argument(help="write it here (mode 0600; an existing file is kept)")
    ] = None,
) -> None:
    """A new pre-shared join secret for a `ray up` cluster (file_mounts ship it to every node)."""
    from aegis_ray.adapters.files import write_private
    from aegis_ray.adapters.postgres.tokens import new_secret

    if file is None:
        print(new_secret())
        return
    if file.exists():
        console.print(f"{file} exists: kept")
        return
    write_private(file, new_secret() + "\n", replace=False)
    console.print(f"join secret written to {file}")


# ---------------------------------------------------------------- for `aegis node start/stop`


def _node_config(path: Path) -> NodeConfig:
    try:
        doc = load_file(path)
    except ManifestError as err:
        _invalid(str(err))
    if not isinstance(doc, NodeConfig):
        _invalid(f"{path}: kind: expected NodeConfig (got {doc.kind!r})")
    return doc


def instance_config(
    node: NodeConfig, config: Path, *, node_id: str | None, orchestrator_url: str | None
) -> NodeConfig:
    """This instance's NodeConfig: `--node-id` (a template: {id}, {host}) and
    `--orchestrator-url` applied; exits 2 if the result is not a valid NodeConfig."""
    if not node_id and not orchestrator_url:
        return node
    try:
        resolved = (
            instance_node_id(node_id, node.spec.node.id, socket.gethostname()) if node_id else None
        )
        return with_overrides(
            node, source=str(config), node_id=resolved, orchestrator_url=orchestrator_url
        )
    except ValueError as err:  # ManifestError too
        _invalid(str(err))


def read_secret_file(path: Path, option: str) -> str:
    """A join token or secret from a file the launcher shipped; exits 2 if unusable."""
    try:
        value = path.read_text().strip()
    except OSError as err:
        _invalid(f"{option} {path}: cannot read it: {err.strerror}")
    if len(value) < MIN_SECRET_CHARS:
        _invalid(
            f"{option} {path}: a secret needs at least {MIN_SECRET_CHARS} characters "
            f"(got {len(value)}); make one with `aegis cluster secret FILE`"
        )
    return value


def ray_args_with_env(ray_arg: list[str] | None) -> list[str]:
    """`--ray-arg` values, then those of AEGIS_RAY_ARGS (shell words): lets a test or an
    operator add ports to launcher commands without editing them."""
    return [*(ray_arg or []), *Settings().ray_arg_list]
