"""Agent containers on the local Docker engine, and the Ray actor that launches them.

Only the plain data is re-exported here: ``docker_runtime`` needs the Docker SDK and ``launcher``
needs Ray, and importing the package should need neither.
"""

from aegis_ray.runtime.container import ContainerSpec, LaunchError, LogLine, PollResult

__all__ = ["ContainerSpec", "LaunchError", "LogLine", "PollResult"]
