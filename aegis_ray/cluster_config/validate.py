"""`aegis cluster validate`: is a `ray up` cluster YAML one aegis can run? Checked offline.

A cluster YAML runs `aegis node start` on every node. `validate_cluster` checks it with Ray's own
launcher code (`ray_schema`), after the command lists (`commands`), and then with aegis's
cross-checks (`cross_checks`). Nothing here talks to a cloud or needs credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aegis_ray.cluster_config.commands import command_problems
from aegis_ray.cluster_config.cross_checks import CrossCheck
from aegis_ray.cluster_config.identity import instance_node_id, with_overrides
from aegis_ray.cluster_config.node_types import node_type_snippet
from aegis_ray.cluster_config.ray_schema import ray_checks
from aegis_ray.cluster_config.results import ClusterConfigError, ClusterProblem, ClusterSummary

# What `aegis cluster` imports from here.
__all__ = [
    "ClusterConfigError",
    "ClusterSummary",
    "instance_node_id",
    "node_type_snippet",
    "validate_cluster",
    "validate_cluster_file",
    "with_overrides",
]


def validate_cluster_file(path: Path, base_dir: Path) -> ClusterSummary:
    """Validate a cluster YAML file; relative file_mounts resolve against `base_dir` (as for
    `ray up`, which resolves them against its working directory). Raises ClusterConfigError."""
    source = str(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ClusterConfigError(
            source, [ClusterProblem("", "", f"cannot read file: {err.strerror}")]
        ) from None
    return validate_cluster(text, source, base_dir)


def validate_cluster(text: str, source: str, base_dir: Path) -> ClusterSummary:
    """Validate cluster YAML text: Ray's launcher checks, then aegis's cross-checks."""
    doc = _parse(text, source)
    problems = command_problems(doc)
    prepared, ray_problems = ray_checks(doc)
    problems += ray_problems
    if problems or prepared is None:
        raise ClusterConfigError(source, problems)
    check = CrossCheck(doc, prepared, source, base_dir)
    check.run()
    if check.problems:
        raise ClusterConfigError(source, check.problems)
    return check.summary


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)  # what `ray up` uses
    except yaml.YAMLError as err:
        message = f"YAML error: {err}"
        if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
            mark = err.problem_mark
            message = f"YAML error at line {mark.line + 1}, column {mark.column + 1}: {err.problem}"
        raise ClusterConfigError(source, [ClusterProblem("", "", message)]) from None
    if not isinstance(doc, dict):
        what = "an empty document" if doc is None else f"a {type(doc).__name__}"
        message = f"expected a cluster config mapping (cluster_name, provider, ...), got {what}"
        raise ClusterConfigError(source, [ClusterProblem("", "", message)])
    return doc
