"""Is the local Docker engine reachable? Agents run as containers, so every node needs one."""

from __future__ import annotations

import os

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


class DockerUnavailable(RuntimeError):
    """The Docker engine does not answer."""


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def docker_status(timeout: float = 3.0) -> tuple[bool, str]:
    """Ping the engine; (True, version info) or (False, what is wrong and how to fix it)."""
    import docker

    host = docker_host()
    client = None
    try:
        client = docker.DockerClient(base_url=host, timeout=int(max(1, timeout)))
        client.ping()
        version = client.version()
        return True, f"Docker {version.get('Version', '?')} at {host}"
    except Exception as err:  # the SDK raises many kinds: all mean "not reachable"
        return False, (
            f"Docker engine not reachable at {host}: {err}; "
            "start it with `dockerd` or `systemctl start docker`"
        )
    finally:
        if client is not None:
            client.close()


def require_docker() -> str:
    """Return the status line, or raise DockerUnavailable with a hint to start the engine."""
    ok, message = docker_status()
    if not ok:
        raise DockerUnavailable(message)
    return message
