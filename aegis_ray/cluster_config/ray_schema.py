"""What Ray's own launcher code says of a cluster YAML: `prepare_config`, its JSON schema and
`validate_config` (private API; Ray is pinned), as problems naming the node type and key."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import re
from typing import Any

from aegis_ray.cluster_config.commands import COMMAND_KEYS, NODE_TYPE_COMMAND_KEYS
from aegis_ray.cluster_config.results import ClusterProblem


def ray_checks(doc: dict[str, Any]) -> tuple[dict[str, Any] | None, list[ClusterProblem]]:
    """What Ray's launcher says: prepare_config, its JSON schema, then validate_config."""
    import click
    import jsonschema  # type: ignore[import-untyped]
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    if not isinstance(doc.get("provider"), dict) or "type" not in doc["provider"]:
        return None, [ClusterProblem("", "provider", "required, with a type (aws, local, ...)")]
    ray_logger = logging.getLogger("ray.autoscaler")
    level = ray_logger.level
    ray_logger.setLevel(logging.WARNING)  # prepare_config narrates the defaults it fills in
    try:
        # Its cli_logger prints aborts itself; the exception carries the same message.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            prepared = prepare_config(copy.deepcopy(doc))
    except (click.ClickException, ValueError, KeyError, TypeError, AssertionError) as err:
        message = getattr(err, "message", None) or str(err)
        return None, [ClusterProblem("", "", f"Ray's launcher refuses it: {message}")]
    finally:
        ray_logger.setLevel(level)
    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        schema = json.load(f)
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        p
        for err in sorted(
            validator.iter_errors(prepared), key=lambda e: [str(p) for p in e.absolute_path]
        )
        for p in _schema_problem(err, doc)
    ]
    if not problems:
        try:
            validate_config(prepared)
        except (ValueError, RuntimeError, jsonschema.ValidationError) as err:
            problems.append(ClusterProblem("", "", f"Ray's launcher refuses it: {err}"))
    return prepared, problems


def _schema_problem(err: Any, doc: dict[str, Any]) -> list[ClusterProblem]:
    """A jsonschema error as problems naming the node type and key (command lists excepted:
    `commands.command_problems` reports those, once, where the user wrote them)."""
    path = list(err.absolute_path)
    where = ""
    if len(path) >= 2 and path[0] == "available_node_types":
        where, path = f"node type {path[1]}", path[2:]
        if path and path[0] in NODE_TYPE_COMMAND_KEYS:
            return []
    elif path and path[0] in COMMAND_KEYS:
        return []
    key = _dotted(path)
    if err.validator == "additionalProperties":
        accepted = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(accepted)) if isinstance(err.instance, dict) else []
        return [
            ClusterProblem(
                where,
                _dotted([*path, name]),
                f"unknown key (Ray's cluster schema accepts: {', '.join(accepted)})",
            )
            for name in extra
        ]
    if (
        err.validator == "type"
        and err.validator_value == "integer"
        and isinstance(err.instance, float)
    ):
        message = (
            f"must be a whole number: the cluster launcher takes no fractions (got {err.instance})"
        )
    elif err.validator == "type":
        message = f"must be of type {err.validator_value} (got {err.instance!r})"
    elif err.validator == "minimum":
        message = f"must be >= {err.validator_value} (got {err.instance!r})"
    elif err.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        return [ClusterProblem(where, _dotted([*path, m]), "required") for m in missing]
    else:
        message = err.message
    return [ClusterProblem(where, key, message)]


def _dotted(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
