"""Named contexts: how to reach each of several clusters, in one client config file.

The file is `$AEGIS_CONFIG`, else `$XDG_CONFIG_HOME/aegis/config.yaml` (`~/.config/...`):

    current-context: lab
    contexts:
      lab:
        api_url: http://10.0.0.5:8080       # REST
        grpc_address: 10.0.0.5:50051        # gRPC
        token_file: ~/.config/aegis/lab.token
        api: grpc                           # the transport commands use (rest or grpc)
        timeout: 10                         # seconds per request
      laptop: {}                            # this machine: what `aegis up` recorded

A context names what differs from this machine; what it leaves out is found as without one
(sdk/discovery.py). Unknown keys are refused with the file, the key and the value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aegis_ray.core.models.loading import problems_of


class ContextError(ValueError):
    """The client config file is unreadable or names something wrong."""


class Context(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_url: str | None = Field(default=None, description="the REST API (http://host:8080)")
    grpc_address: str | None = Field(default=None, description="the gRPC API (host:50051)")
    token_file: str | None = Field(default=None, description="a file holding the API token")
    api: Literal["rest", "grpc"] | None = Field(default=None, description="transport to use")
    timeout: float | None = Field(default=None, gt=0, description="seconds per request")
    ca_file: str | None = Field(
        default=None, description="the CA the API's TLS certificate is checked against (PEM)"
    )

    def token(self, path: Path) -> str | None:
        """The token in `token_file` (None if the context names none)."""
        if not self.token_file:
            return None
        file = Path(self.token_file).expanduser()
        try:
            return file.read_text().strip()
        except OSError as err:
            raise ContextError(f"{path}: token_file: cannot read {file}: {err.strerror}") from None


class ClientConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    current_context: str | None = Field(default=None, alias="current-context")
    contexts: dict[str, Context] = Field(default_factory=dict)


def config_path() -> Path:
    explicit = os.environ.get("AEGIS_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aegis" / "config.yaml"


def load(path: Path | None = None) -> ClientConfig:
    """The client config (empty if the file does not exist); ContextError names what is wrong."""
    path = path or config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ClientConfig()
    except OSError as err:
        raise ContextError(f"{path}: cannot read it: {err.strerror}") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ContextError(f"{path}: not YAML: {err}") from None
    if not isinstance(doc, dict):
        raise ContextError(f"{path}: expected a mapping (got {type(doc).__name__})")
    try:
        return ClientConfig.model_validate(doc)
    except ValidationError as err:
        lines = [
            f"{path}: {p.path}: {p.message} (got {p.value!r})"
            for p in problems_of(err, ClientConfig)
        ]
        raise ContextError("\n".join(lines)) from None


def save(config: ClientConfig, path: Path | None = None) -> Path:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = config.model_dump(by_alias=True, exclude_none=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def active(name: str | None = None, path: Path | None = None) -> tuple[str, Context] | None:
    """The context to use: `name` (--context / AEGIS_CONTEXT), else the file's current one;
    None when neither is set. ContextError if the name is not in the file."""
    path = path or config_path()
    config = load(path)
    chosen = name or os.environ.get("AEGIS_CONTEXT") or config.current_context
    if not chosen:
        return None
    if chosen not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none"
        raise ContextError(f"{path}: no context {chosen!r} (contexts: {known})")
    return chosen, config.contexts[chosen]
