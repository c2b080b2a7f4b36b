"""What one agent container is asked to be, and what watching it reports: plain data only.

These values cross process boundaries (Temporal activity -> node agent), so they hold no
clients and import neither Docker nor Ray.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from aegis_ray.core.secrets import SecretDelivery

LABEL_PREFIX = "ai.100monkeys.aegis"
LABEL_EXECUTION_ID = f"{LABEL_PREFIX}/execution-id"
LABEL_ATTEMPT = f"{LABEL_PREFIX}/attempt"
LABEL_MANAGED = f"{LABEL_PREFIX}/managed"
# What a node agent needs to take over a container after its own restart.
LABEL_TIMEOUT = f"{LABEL_PREFIX}/timeout-s"
LABEL_PLACEMENT_GROUP = f"{LABEL_PREFIX}/placement-group-id"
# The aegis node whose agent started it: several nodes (or clusters) may share one engine.
LABEL_NODE = f"{LABEL_PREFIX}/node-id"
# Which env variables and files hold which secret ("NAME#KEY"), never a value: what a restarted
# node agent needs to find the values again and keep redacting them.
LABEL_SECRET_REFS = f"{LABEL_PREFIX}/secret-refs"
RESERVED_LABELS = (
    LABEL_NODE,
    LABEL_EXECUTION_ID,
    LABEL_ATTEMPT,
    LABEL_MANAGED,
    LABEL_TIMEOUT,
    LABEL_PLACEMENT_GROUP,
    LABEL_SECRET_REFS,
)

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
ERROR_CODES = (
    "image_not_found",
    "image_pull_failed",
    "docker_unavailable",
    "start_failed",
    "invalid_spec",
    "secret_not_found",
    "secrets_unavailable",
)
# Docker refuses memory limits below 6 MiB.
MIN_MEMORY_BYTES = 6 * 1024 * 1024
# Modes that would hand the agent the host's or another container's network namespace.
FORBIDDEN_NETWORK_MODES = ("host",)
_ENV_NAME = re.compile(r"^[^=\x00]+$")


class LaunchError(Exception):
    """A container could not be launched; ``code`` says which step failed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self) -> tuple[type[LaunchError], tuple[str, str]]:
        # Ray pickles exceptions raised in actors; rebuild from the two fields.
        return (type(self), (self.code, self.message))


@dataclass(frozen=True)
class ContainerSpec:
    """One attempt's container: image, command, env and the limits the engine enforces."""

    execution_id: str
    attempt: int
    image: str
    command: tuple[str, ...] | None
    env: dict[str, str]
    cpu_millis: int
    memory_bytes: int
    pids_limit: int = 256
    network_mode: str = "none"  # "none", "bridge" or the name of a Docker network
    pull_policy: str = "IfNotPresent"
    labels: dict[str, str] = field(default_factory=dict)
    # The node agent stops the container this long after it started and reports a timeout,
    # whether or not anybody is watching.
    timeout_s: float | None = None
    # The Ray placement group holding the attempt's resources: its removal ends the container.
    placement_group_id: str = ""
    # The node whose agent runs it (set by the agent itself).
    node_id: str = ""
    # Where the node agent gets the values of the manifest's secret references (tokens only).
    secrets: SecretDelivery | None = None

    def problems(self) -> list[str]:
        """Every invalid field, each naming the field, the bad value and what is accepted."""
        out: list[str] = []
        if not self.execution_id:
            out.append("execution_id must not be empty")
        if self.attempt < 0:
            out.append(f"attempt must be >= 0, got {self.attempt}")
        if not self.image or self.image != self.image.strip():
            out.append(f"image must be a non-empty image reference, got {self.image!r}")
        if self.command is not None and not all(isinstance(a, str) for a in self.command):
            out.append(f"command must be a tuple of strings, got {self.command!r}")
        if self.cpu_millis <= 0:
            out.append(f"cpu_millis must be > 0, got {self.cpu_millis}")
        if self.memory_bytes < MIN_MEMORY_BYTES:
            out.append(
                f"memory_bytes must be >= {MIN_MEMORY_BYTES} (6 MiB), got {self.memory_bytes}"
            )
        if self.pids_limit <= 0:
            out.append(f"pids_limit must be > 0, got {self.pids_limit}")
        if (
            not self.network_mode
            or self.network_mode in FORBIDDEN_NETWORK_MODES
            or self.network_mode.startswith("container:")
        ):
            out.append(
                f"network_mode must be 'none', 'bridge' or a named network, "
                f"got {self.network_mode!r}"
            )
        if self.pull_policy not in PULL_POLICIES:
            out.append(f"pull_policy must be one of {PULL_POLICIES}, got {self.pull_policy!r}")
        bad_env = [k for k in self.env if not _ENV_NAME.match(k)]
        if bad_env:
            out.append(f"env names must be non-empty and contain no '=', got {bad_env!r}")
        reserved = [k for k in self.labels if k in RESERVED_LABELS]
        if reserved:
            out.append(f"labels must not set the reserved keys {reserved!r}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            out.append(f"timeout_s must be > 0 or None, got {self.timeout_s}")
        if self.secrets is not None:
            twice = sorted({e.env for e in self.secrets.env} & set(self.env))
            if twice:
                out.append(f"env names {twice!r} are given both a value and a secret")
            relative = [f.path for f in self.secrets.files if not f.path.startswith("/")]
            if relative:
                out.append(f"secret file paths must be absolute, got {relative!r}")
        return out

    def validate(self) -> None:
        """Raise LaunchError("invalid_spec") listing every invalid field."""
        problems = self.problems()
        if problems:
            raise LaunchError("invalid_spec", "; ".join(problems))

    @property
    def container_name(self) -> str:
        return container_name(self.execution_id, self.attempt)

    def all_labels(self) -> dict[str, str]:
        """The caller's labels plus the ones every aegis container carries."""
        labels = {
            **self.labels,
            LABEL_EXECUTION_ID: self.execution_id,
            LABEL_ATTEMPT: str(self.attempt),
            LABEL_MANAGED: "true",
            LABEL_TIMEOUT: "" if self.timeout_s is None else repr(float(self.timeout_s)),
            LABEL_PLACEMENT_GROUP: self.placement_group_id,
            LABEL_NODE: self.node_id,
        }
        if self.secrets is not None:
            labels[LABEL_SECRET_REFS] = SecretPlaces(
                {e.env: str(e.ref) for e in self.secrets.env},
                tuple((f.path, str(f.ref)) for f in self.secrets.files),
            ).label()
        return labels


def container_name(execution_id: str, attempt: int) -> str:
    """The attempt's container name (also names its secret files on the node)."""
    # Docker names allow [a-zA-Z0-9_.-]; execution ids are UUIDs, but never trust input.
    prefix = re.sub(r"[^a-zA-Z0-9_.-]", "-", execution_id[:12])
    return f"aegis-{prefix}-a{attempt}"


@dataclass(frozen=True)
class SecretPlaces:
    """Where a container holds secret values: env variable -> "NAME#KEY", and the files
    (container path, "NAME#KEY") in the order they are written on the node."""

    env: dict[str, str] = field(default_factory=dict)
    files: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.env or self.files)

    def label(self) -> str:
        return json.dumps({"env": self.env, "files": [list(f) for f in self.files]})

    @classmethod
    def from_label(cls, text: str) -> SecretPlaces:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(dict(data.get("env") or {}), tuple(tuple(f) for f in data.get("files") or ()))


@dataclass(frozen=True)
class LogLine:
    seq: int  # index among the container's lines, from 0: the same on every read of its logs
    ts: float  # unix seconds, as stamped by the Docker engine
    stream: str  # "stdout" | "stderr"
    text: str  # without the trailing newline
