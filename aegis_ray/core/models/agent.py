"""The Agent manifest (`kind: Agent`): what to run, with which limits, and where it may run."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    JsonValue,
    WithJsonSchema,
    model_validator,
)
from pydantic import Tag as Member

from aegis_ray.core.models.base import (
    SECRET_MEMBER,
    TEXT_MEMBER,
    DnsLabel,
    StrictInt,
    StrictModel,
    bounded,
    field_error,
    field_errors,
    unique,
)
from aegis_ray.core.models.quantity import (
    GiB,
    MiB,
    TiB,
    format_duration,
    format_memory,
    parse_cpu,
    parse_duration,
    parse_memory,
)
from aegis_ray.core.models.tags import validate_tag
from aegis_ray.core.secrets import REFERENCE_FORM, Reference, SecretRef, check_reference

_SIZE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$"},
    ]
}
_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^(\d+(\.\d+)?|(\d+(\.\d+)?(ms|s|m|h|d))+)$"},
    ]
}
_CPU_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 10, "maximum": 256000},
        {"type": "number", "minimum": 0.01, "maximum": 256},
        {"type": "string", "pattern": r"^(\d+m?|\d*\.\d+|\d+\.)$"},
    ]
}


def _check_cpu(millis: int) -> int:
    if millis < 10:
        raise ValueError(
            "must be at least 10 millicores (cpu is in millicores: write 2 cores as 2000 or 2.0)"
        )
    if millis > 256_000:
        raise ValueError("must be at most 256000 millicores (256 cores)")
    return millis


Millicores = Annotated[
    int, BeforeValidator(parse_cpu), AfterValidator(_check_cpu), WithJsonSchema(_CPU_SCHEMA)
]
Memory = Annotated[
    int,
    BeforeValidator(parse_memory),
    bounded(6 * MiB, 4 * TiB, format_memory),  # Docker refuses containers under 6 MiB
    WithJsonSchema(_SIZE_SCHEMA),
]
Disk = Annotated[
    int,
    BeforeValidator(parse_memory),
    bounded(0, 100 * TiB, format_memory),
    WithJsonSchema(_SIZE_SCHEMA),
]
Timeout = Annotated[
    float,
    BeforeValidator(parse_duration),
    bounded(1, 7 * 86400, format_duration),
    WithJsonSchema(_DURATION_SCHEMA),
]
Tag = Annotated[str, AfterValidator(validate_tag)]

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_env_name(name: str) -> str:
    if not _ENV_NAME_RE.fullmatch(name):
        raise ValueError(
            f"env name {name!r} must be letters, digits and '_', not starting with a digit"
        )
    if name.upper().startswith("AEGIS_"):
        raise ValueError(f"env name {name!r} uses the reserved prefix AEGIS_")
    return name


EnvName = Annotated[str, AfterValidator(_check_env_name)]


# Docker's reference grammar (distribution/reference), checked piece by piece so that the
# error says which piece is wrong.
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_RE = re.compile(
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
IMAGE_FORM = "[registry[:port]/]name[:tag][@sha256:digest]"


def validate_image(ref: str) -> str:
    """Return `ref` if it is a Docker image reference, else raise ValueError saying why."""

    def bad(why: str) -> ValueError:
        return ValueError(f"{ref!r} is not an image reference {IMAGE_FORM}: {why}")

    if not ref:
        raise bad("empty")
    if any(c.isspace() for c in ref):
        raise bad("contains whitespace")
    rest = ref
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise bad(f"digest {digest!r} must be sha256: and 64 lowercase hex digits")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise bad(f"tag {tag!r} must be letters, digits, '_', '.' or '-' (at most 128)")
    parts = rest.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN_RE.fullmatch(first):
            raise bad(f"registry {first!r} must be host[:port]")
        parts = parts[1:]
    if len("/".join(parts)) > 255:
        raise bad("repository name longer than 255 characters")
    for part in parts:
        if part != part.lower():
            raise bad("repository name must be lowercase")
        if not _PATH_COMPONENT_RE.fullmatch(part):
            raise bad(f"repository component {part!r} must be lowercase letters and digits")
    return ref


SecretReference = Annotated[
    str,
    AfterValidator(check_reference),
    Field(description=f"a secret of this tenant and one of its keys: {REFERENCE_FORM}"),
]


class SecretEnvValue(StrictModel):
    """An env value taken from a secret at launch: `{secret: "openai#api_key"}`."""

    secret: SecretReference


def _env_member(value: Any) -> str | None:
    if isinstance(value, str):
        return TEXT_MEMBER
    return SECRET_MEMBER if isinstance(value, dict | SecretEnvValue) else None


EnvValue = Annotated[
    Annotated[str, Member(TEXT_MEMBER)] | Annotated[SecretEnvValue, Member(SECRET_MEMBER)],
    Discriminator(
        _env_member,
        custom_error_type="env_value",
        custom_error_message=f"must be a valid string or {{secret: {REFERENCE_FORM}}}",
    ),
]
# Where a secret file may not go: the container's root, the kernel's file systems, and the
# writable /tmp (a secret file is read-only, and shadowing /tmp would be confusing).
_NO_SECRET_FILES_UNDER = ("/proc", "/sys", "/dev", "/tmp")
_PATH_RE = re.compile(r"(/[A-Za-z0-9_.@+-]+)+")


def _check_secret_path(path: str) -> str:
    if not _PATH_RE.fullmatch(path) or any(p in (".", "..") for p in path.split("/")):
        raise ValueError(
            f"{path!r} must be an absolute file path of letters, digits and '_.@+-' "
            "without '.' or '..' parts, like /run/secrets/api_key"
        )
    for root in _NO_SECRET_FILES_UNDER:
        if path == root or path.startswith(root + "/"):
            raise ValueError(f"{path!r} is under {root}, where secret files cannot go")
    return path


class SecretFileSpec(StrictModel):
    """A read-only file (tmpfs, mode 0400, owned by the container's user) holding a secret."""

    secret: SecretReference
    path: Annotated[str, AfterValidator(_check_secret_path)]

    @property
    def ref(self) -> SecretRef:
        return SecretRef.parse(self.secret)


class AgentMetadata(StrictModel):
    name: DnsLabel
    version: str = "0.1.0"
    labels: dict[str, str] = Field(default_factory=dict)


class RuntimeSpec(StrictModel):
    image: Annotated[str, AfterValidator(validate_image)]
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    command: Annotated[list[str], Field(min_length=1)] | None = None


class TaskSpec(StrictModel):
    instruction: str = ""
    input: JsonValue = None


class ResourceSpec(StrictModel):
    cpu: Millicores = Field(500, description="millicores (500 = half a core), or '0.5' cores")
    memory: Memory = Field(256 * MiB, description="bytes, or a size like 512Mi")
    disk: Disk = Field(1 * GiB, description="bytes, or a size like 1Gi")
    gpu: Annotated[StrictInt, bounded(0, 16)] = 0
    # The reference manifest puts the timeout here; it is copied to spec.execution.timeout.
    timeout: Timeout | None = None


class NetworkSpec(StrictModel):
    mode: Literal["none", "allow", "deny"] = "none"


class SecuritySpec(StrictModel):
    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    network: NetworkSpec = Field(default_factory=NetworkSpec)


class ExecutionSpec(StrictModel):
    target_tags: Annotated[list[Tag], AfterValidator(unique)] = Field(default_factory=list)
    timeout: Timeout = Field(600.0, description="seconds, or a duration like 10m")
    max_retries: Annotated[StrictInt, bounded(0, 10)] = 0


class AgentSpec(StrictModel):
    runtime: RuntimeSpec
    task: TaskSpec = Field(default_factory=TaskSpec)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    secret_files: list[SecretFileSpec] = Field(default_factory=list)
    security: SecuritySpec = Field(default_factory=SecuritySpec)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)

    @model_validator(mode="after")
    def _secret_files_apart(self) -> AgentSpec:
        """No two secret files at one path, nor one inside another's path."""
        problems: list[tuple[str, str, Any]] = []
        seen: list[str] = []
        for i, f in enumerate(self.secret_files):
            clash = next(
                (p for p in seen if p == f.path or f.path.startswith(p + "/")
                 or p.startswith(f.path + "/")),
                None,
            )  # fmt: skip
            if clash is not None:
                why = f"clashes with the secret file at {clash!r}"
                problems.append((f"secret_files[{i}].path", why, f.path))
            seen.append(f.path)
        if problems:
            raise field_errors(problems)
        return self

    def secret_env(self) -> dict[str, SecretRef]:
        """The env variables whose value comes from a secret."""
        return {
            name: SecretRef.parse(value.secret)
            for name, value in self.env.items()
            if isinstance(value, SecretEnvValue)
        }

    def secret_references(self) -> list[Reference]:
        """Every place this spec takes a value from a secret, in document order."""
        found = [Reference(f"spec.env.{n}", ref) for n, ref in self.secret_env().items()]
        found += [
            Reference(f"spec.secret_files[{i}].secret", f.ref)
            for i, f in enumerate(self.secret_files)
        ]
        return found

    def plain_env(self) -> dict[str, str]:
        """The env values written in the manifest itself (not those from secrets)."""
        return {k: v for k, v in self.env.items() if isinstance(v, str)}

    @model_validator(mode="before")
    @classmethod
    def _timeout_from_security(cls, data: Any) -> Any:
        """Accept the reference manifest's security.resources.timeout as the execution timeout."""
        legacy = _dig(data, "security", "resources", "timeout")
        if legacy is None:
            return data
        current = _dig(data, "execution", "timeout")
        if current is None:
            execution = data.get("execution")
            execution = dict(execution) if isinstance(execution, dict) else {}
            return {**data, "execution": {**execution, "timeout": legacy}}
        try:
            differ = parse_duration(legacy) != parse_duration(current)
        except ValueError:
            return data  # the field validators report the bad value
        if differ:
            raise field_error(
                "security.resources.timeout",
                "conflicts with spec.execution.timeout; give one of them",
                legacy,
            )
        return data


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


class AgentManifest(StrictModel):
    api_version: Literal["100monkeys.ai/v1"] = Field(alias="apiVersion")
    kind: Literal["Agent"]
    metadata: AgentMetadata
    spec: AgentSpec

    def to_document(self) -> dict[str, Any]:
        """The manifest as a YAML/JSON document (aliases, sizes in bytes, seconds)."""
        return self.model_dump(mode="json", by_alias=True)
