"""aegis-ray: an execution cluster for containerized AI agents, built on Ray.

The Python SDK::

    from aegis_ray import Client
    client = Client.from_env()
    print(client.run("examples/hello-agent.yaml").state)

Names here load on first use, so `import aegis_ray` (or any module below it) loads no client,
server or Ray library until one of them is asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Client": "aegis_ray.sdk.client",
    "AsyncClient": "aegis_ray.sdk.client",
    "AegisError": "aegis_ray.sdk.errors",
    "ApiError": "aegis_ray.sdk.errors",
    "ApiUnreachable": "aegis_ray.sdk.errors",
    "Execution": "aegis_ray.contract.executions",
    "Event": "aegis_ray.contract.executions",
    "LogLine": "aegis_ray.contract.executions",
    "ExecutionState": "aegis_ray.core.models.execution",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    # What type checkers and editors see; at run time `__getattr__` loads each on first use.
    from aegis_ray.contract.executions import Event as Event
    from aegis_ray.contract.executions import Execution as Execution
    from aegis_ray.contract.executions import LogLine as LogLine
    from aegis_ray.core.models.execution import ExecutionState as ExecutionState
    from aegis_ray.sdk.client import AsyncClient as AsyncClient
    from aegis_ray.sdk.client import Client as Client
    from aegis_ray.sdk.errors import AegisError as AegisError
    from aegis_ray.sdk.errors import ApiError as ApiError
    from aegis_ray.sdk.errors import ApiUnreachable as ApiUnreachable


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'aegis_ray' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
