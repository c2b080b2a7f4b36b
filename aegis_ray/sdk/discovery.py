"""Where the API is and which token to use, found as the `aegis` CLI finds them.

Token: AEGIS_API_TOKEN, else the context's token_file (sdk/contexts.py), else the admin token
`aegis up` wrote ($AEGIS_HOME/admin.token). REST: AEGIS_API_URL, else the context's api_url,
else the API `aegis up` / `aegis node start` recorded ($AEGIS_HOME/up.json), else
http://AEGIS_API_HOST:AEGIS_API_PORT. gRPC: AEGIS_GRPC_ADDRESS, else the context's, else
up.json's, else AEGIS_API_HOST:AEGIS_GRPC_PORT. The transport: AEGIS_API (rest or grpc), else
the context's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aegis_ray.sdk import contexts
from aegis_ray.sdk.contexts import Context
from aegis_ray.sdk.errors import MissingToken
from aegis_ray.settings import Settings


def token(settings: Settings, context: Context | None = None) -> str:
    """The API token to use; MissingToken says where it was looked for."""
    if settings.api_token is not None:
        return settings.api_token
    if context is not None and context.token_file:
        found = context.token(contexts.config_path())
        if found:
            return found
    if settings.admin_token_path.exists():
        return settings.admin_token_path.read_text().strip()
    raise MissingToken(
        f"no API token: run `aegis up` (it writes {settings.admin_token_path}) "
        "or set AEGIS_API_TOKEN"
    )


def _recorded(settings: Settings, key: str) -> str:
    """An address `aegis up` recorded in up.json (node/stack.py's UpState), or ""."""
    try:
        state: dict[str, Any] = json.loads(settings.state_path.read_text())
    except FileNotFoundError:
        return ""
    return str(state.get(key) or "")


def api_url(settings: Settings, context: Context | None = None) -> str:
    """AEGIS_API_URL if set, else the context's, else where `aegis up` / `aegis node start`
    put the API here."""
    return (
        settings.api_url
        or (context and context.api_url)
        or _recorded(settings, "api_url")
        or settings.api_base_url
    )


def ca_file(settings: Settings, context: Context | None = None) -> str | None:
    """The CA the API's TLS certificate is checked against: AEGIS_CA_FILE, else the context's
    ca_file, else the one `aegis up` recorded (its NodeConfig's spec.api.tls); None: none
    (plain HTTP and gRPC, or an https API checked against the system's CAs)."""
    found = (
        (str(settings.ca_file) if settings.ca_file else "")
        or (context and context.ca_file)
        or _recorded(settings, "ca_file")
    )
    return str(Path(found).expanduser()) if found else None


def grpc_address(settings: Settings, context: Context | None = None) -> str:
    """AEGIS_GRPC_ADDRESS if set, else the context's, else where `aegis up` / `aegis node
    start` serve gRPC here."""
    return (
        settings.grpc_address
        or (context and context.grpc_address)
        or _recorded(settings, "grpc_address")
        or f"{settings.api_host}:{settings.grpc_port}"
    )
