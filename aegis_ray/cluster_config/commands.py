"""The command lists of a cluster YAML: YAML that turned a command into something else, and
`ray stop` (it stops every Ray process on the machine)."""

from __future__ import annotations

import re
from typing import Any

from aegis_ray.cluster_config.results import ClusterProblem

COMMAND_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)
NODE_TYPE_COMMAND_KEYS = ("initialization_commands", "worker_setup_commands")
_RAY_STOP = re.compile(r"(^|[;&|(`]|\s)ray\s+stop\b")


def command_lists(doc: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(where, key, value) of every command list in the document, top level and per node type."""
    out = [("", key, doc[key]) for key in COMMAND_KEYS if key in doc]
    types = doc.get("available_node_types")
    if isinstance(types, dict):
        for name, spec in types.items():
            if isinstance(spec, dict):
                out += [
                    (f"node type {name}", k, spec[k]) for k in NODE_TYPE_COMMAND_KEYS if k in spec
                ]
    return out


def command_problems(doc: dict[str, Any]) -> list[ClusterProblem]:
    """Commands YAML turned into something else (the `: ` trap) and `ray stop`."""
    problems = []
    for where, key, commands in command_lists(doc):
        if not isinstance(commands, list):
            problems.append(
                ClusterProblem(where, key, f"must be a list of commands (got {commands!r})")
            )
            continue
        for i, cmd in enumerate(commands):
            at = f"{key}[{i}]"
            if isinstance(cmd, dict):
                hint = ""
                if len(cmd) == 1:
                    ((k, v),) = cmd.items()
                    hint = f': "{k}: {v}"'
                problems.append(
                    ClusterProblem(where, at, f"a command parsed as a mapping (quote it{hint})")
                )
            elif not isinstance(cmd, str):
                problems.append(ClusterProblem(where, at, f"must be a string (got {cmd!r})"))
            elif _RAY_STOP.search(cmd):
                problems.append(
                    ClusterProblem(
                        where,
                        at,
                        "`ray stop` stops every Ray process on the machine, not just this "
                        "node's: use `aegis node stop --config ...` (idempotent)",
                    )
                )
    return problems
