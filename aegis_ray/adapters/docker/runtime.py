"""Agent containers on the local Docker engine: images, create with limits, stop, remove, find.

The container lifecycle only; reading logs is `logs.py`, supervising containers (following,
exit, deadline, re-adoption) is the node agent's job.

Ray's resources are only bookkeeping; the engine is what actually holds a container to its CPU,
memory and pids share. Disk is not enforced: overlay2 on ext4 cannot cap a container's writable
layer (``storage_opt size`` needs xfs with pquota), so the root filesystem is read-only and the
only writable place is a small tmpfs at /tmp.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig, Mount
from docker.utils import parse_repository_tag

from aegis_ray.adapters.docker.container import (
    LABEL_ATTEMPT,
    LABEL_EXECUTION_ID,
    LABEL_MANAGED,
    LABEL_PLACEMENT_GROUP,
    LABEL_SECRET_REFS,
    LABEL_TIMEOUT,
    ContainerSpec,
    LaunchError,
    SecretPlaces,
)
from aegis_ray.adapters.docker.logs import parse_stamp
from aegis_ray.adapters.docker.network import ensure_agent_network

log = logging.getLogger(__name__)

API_TIMEOUT_S = 30
PULL_TIMEOUT_S = 300.0
NOBODY = "65534:65534"
TMPFS = {"/tmp": "rw,nosuid,nodev,size=64m,mode=1777"}
# Bounded json-file logs: the node agent reads them as they are written.
LOG_CONFIG = LogConfig(type="json-file", config={"max-size": "20m", "max-file": "3"})
# Connections to the engine held at once: every running container's log stream keeps one.
MAX_POOL_SIZE = 512


@dataclass(frozen=True)
class Managed:
    """An aegis container found on the engine, with what its labels say about it."""

    container_id: str
    execution_id: str
    attempt: int
    running: bool
    started_at: float | None  # unix seconds, None if it never started
    timeout_s: float | None
    placement_group_id: str
    secret_places: SecretPlaces = field(default_factory=SecretPlaces)


@dataclass(frozen=True)
class Exit:
    """How a container ended, as the engine reports it."""

    exit_code: int | None
    oom_killed: bool
    error: str | None


class DockerRuntime:
    """Start, watch, stop and remove aegis containers on this node's Docker engine."""

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        pull_timeout_s: float = PULL_TIMEOUT_S,
    ) -> None:
        self._client = client
        self._pull_timeout_s = pull_timeout_s
        self._lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        """The engine client, connected on first use."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = docker.from_env(
                        timeout=API_TIMEOUT_S, max_pool_size=MAX_POOL_SIZE
                    )
                except DockerException as err:
                    raise LaunchError(
                        "docker_unavailable", f"Docker engine not reachable: {err}"
                    ) from err
            return self._client

    # -- images ---------------------------------------------------------------------------

    def ensure_image(self, spec: ContainerSpec) -> None:
        """Make the spec's image present locally, as its pull policy allows."""
        present = self._image_present(spec.image)
        if spec.pull_policy == "Never":
            if not present:
                raise LaunchError(
                    "image_not_found",
                    f"image {spec.image} not present on node {socket.gethostname()} "
                    "and image_pull_policy is Never",
                )
            return
        if spec.pull_policy == "IfNotPresent" and present:
            return
        self._pull(spec.image)

    def _image_present(self, image: str) -> bool:
        try:
            self.client.images.get(image)
            return True
        except ImageNotFound:
            return False
        except (DockerException, requests.exceptions.ConnectionError) as err:
            raise LaunchError("docker_unavailable", f"Docker engine not reachable: {err}") from err

    def _pull(self, image: str) -> None:
        """Pull with a deadline: the engine's pull call itself has none."""
        outcome: dict[str, str | None] = {}

        def run() -> None:
            try:
                repo, tag = parse_repository_tag(image)
                for msg in self.client.api.pull(
                    repo, tag=tag or "latest", stream=True, decode=True
                ):
                    if "error" in msg:
                        outcome["error"] = str(msg["error"])
                outcome.setdefault("error", None)
            except Exception as err:
                outcome["error"] = str(err)

        t = threading.Thread(target=run, name=f"aegis-pull-{image}", daemon=True)
        t.start()
        t.join(self._pull_timeout_s)
        if t.is_alive():
            raise LaunchError(
                "image_pull_failed",
                f"pulling image {image} did not finish within {self._pull_timeout_s:g}s",
            )
        error = outcome.get("error")
        if error is None and not self._image_present(image):
            error = "the engine reported success but the image is not present"
        if error is not None:
            raise LaunchError("image_pull_failed", f"pulling image {image} failed: {error}")

    # -- containers -----------------------------------------------------------------------

    def start(
        self,
        spec: ContainerSpec,
        *,
        secret_env: Mapping[str, str] | None = None,
        secret_mounts: list[Mount] | None = None,
    ) -> str:
        """Create and start the spec's container with its limits; returns the container id.

        `secret_env` and `secret_mounts` carry the values of the spec's secret references,
        resolved by the caller: the spec itself holds none."""
        spec.validate()
        if spec.network_mode != "none":
            try:  # aegis's own network, kept from this host's services (network.py)
                ensure_agent_network(self.client, spec.network_mode)
            except (RuntimeError, DockerException, OSError) as err:
                raise LaunchError(
                    "network_unavailable", f"network {spec.network_mode}: {err}"
                ) from err
        env = {
            "HOME": "/tmp",  # nobody has no writable home; /tmp is the one writable place
            **spec.env,
            **(secret_env or {}),
            "AEGIS_EXECUTION_ID": spec.execution_id,
            "AEGIS_ATTEMPT": str(spec.attempt),
        }
        kwargs: dict[str, Any] = dict(
            image=spec.image,
            command=list(spec.command) if spec.command else None,
            name=spec.container_name,
            environment=env,
            labels=spec.all_labels(),
            nano_cpus=spec.cpu_millis * 1_000_000,
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,  # equal to the memory limit: no swap
            pids_limit=spec.pids_limit,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            user=NOBODY,
            read_only=True,
            tmpfs=dict(TMPFS),
            network_mode=spec.network_mode,
            # A tiny init as PID 1 forwards SIGTERM, so `stop` ends most agents without SIGKILL.
            init=True,
            auto_remove=False,  # exit code and logs are collected before removal
            log_config=LOG_CONFIG,
            # No volumes, and no mounts but the attempt's own secret files (read-only, from the
            # node's tmpfs): above all never the Docker socket.
            mounts=list(secret_mounts or []),
        )
        container = self._create(spec, kwargs)
        try:
            container.start()
        except (DockerException, requests.exceptions.RequestException) as err:
            self.remove(container.id)
            raise LaunchError(
                "start_failed", f"container for image {spec.image} did not start: {err}"
            ) from err
        cid: str = container.id
        return cid

    def _create(self, spec: ContainerSpec, kwargs: dict[str, Any]) -> Any:
        for _ in range(2):
            try:
                return self.client.containers.create(**kwargs)
            except ImageNotFound as err:
                raise LaunchError(
                    "image_not_found",
                    f"image {spec.image} not present on node {socket.gethostname()}: {err}",
                ) from err
            except APIError as err:
                if err.status_code != 409 or not self._remove_stale(spec):
                    raise LaunchError(
                        "start_failed", f"creating container {spec.container_name}: {err}"
                    ) from err
            except (DockerException, requests.exceptions.ConnectionError) as err:
                raise LaunchError(
                    "docker_unavailable", f"Docker engine not reachable: {err}"
                ) from err
        raise LaunchError(
            "start_failed", f"container name {spec.container_name} is still taken after removal"
        )

    def _remove_stale(self, spec: ContainerSpec) -> bool:
        """Remove a same-named container left by an earlier launcher of this very attempt."""
        try:
            old = self.client.containers.get(spec.container_name)
        except NotFound:
            return True  # gone meanwhile
        labels = old.labels or {}
        same = labels.get(LABEL_EXECUTION_ID) == spec.execution_id and labels.get(
            LABEL_ATTEMPT
        ) == str(spec.attempt)
        if same:
            log.warning("removing stale container %s of the same attempt", old.id[:12])
            self.remove(old.id)
        return same

    def find(self, execution_id: str, attempt: int) -> Managed | None:
        """The container of one attempt, if the engine has it."""
        found = self.managed(
            [f"{LABEL_EXECUTION_ID}={execution_id}", f"{LABEL_ATTEMPT}={attempt}"]
        )
        return found[0] if found else None

    def managed(self, label_filters: list[str] | None = None) -> list[Managed]:
        """Every aegis container on this engine (running or not), optionally filtered."""
        filters = {"label": [f"{LABEL_MANAGED}=true", *(label_filters or [])]}
        try:
            found = self.client.api.containers(all=True, filters=filters)
        except (DockerException, requests.exceptions.ConnectionError) as err:
            raise LaunchError("docker_unavailable", f"Docker engine not reachable: {err}") from err
        out = []
        for c in found:
            try:
                state = self.client.api.inspect_container(c["Id"])["State"]
            except NotFound:
                continue  # removed meanwhile
            out.append(_managed(c["Id"], c.get("Labels") or {}, state))
        return out

    def container_env(self, container_id: str) -> dict[str, str]:
        """The environment the container was created with (secret values included)."""
        config = self.client.api.inspect_container(container_id)["Config"]
        pairs = (item.partition("=") for item in config.get("Env") or [])
        return {name: value for name, _, value in pairs}

    def wait(self, container_id: str) -> Exit:
        """Block until the container has ended; how it ended (None exit code if it is gone)."""
        try:
            self.client.api.wait(container_id, timeout=None)
            state = self.client.api.inspect_container(container_id)["State"]
        except NotFound:
            return Exit(None, False, f"container {container_id[:12]} no longer exists")
        return Exit(
            int(state["ExitCode"]), bool(state.get("OOMKilled")), state.get("Error") or None
        )

    def stop(self, container_id: str, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; a container already gone is fine."""
        with contextlib.suppress(NotFound):
            self.client.api.stop(container_id, timeout=max(0, math.ceil(grace_s)))

    def remove(self, container_id: str) -> None:
        """Force-remove the container; a container already gone is fine."""
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except NotFound:
            pass
        except APIError as err:
            if err.status_code != 409:  # 409: removal already in progress
                raise

    def remove_for_execution(self, execution_id: str) -> int:
        """Remove every aegis container of an execution (any attempt); returns how many."""
        found = self.client.api.containers(
            all=True,
            filters={"label": [f"{LABEL_EXECUTION_ID}={execution_id}", f"{LABEL_MANAGED}=true"]},
        )
        for c in found:
            self.remove(c["Id"])
        return len(found)

    def inspect_limits(self, container_id: str) -> dict[str, Any]:
        """The limits and isolation settings the engine holds for a container."""
        attrs = self.client.api.inspect_container(container_id)
        host, config = attrs["HostConfig"], attrs["Config"]
        return {
            "NanoCpus": host.get("NanoCpus"),
            "Memory": host.get("Memory"),
            "MemorySwap": host.get("MemorySwap"),
            "PidsLimit": host.get("PidsLimit"),
            "CapDrop": host.get("CapDrop"),
            "CapAdd": host.get("CapAdd"),
            "Privileged": host.get("Privileged"),
            "SecurityOpt": host.get("SecurityOpt"),
            "NetworkMode": host.get("NetworkMode"),
            "ReadonlyRootfs": host.get("ReadonlyRootfs"),
            "Tmpfs": host.get("Tmpfs"),
            "Init": host.get("Init"),
            "User": config.get("User"),
            "Labels": config.get("Labels"),
            "Mounts": [m.get("Source") for m in attrs.get("Mounts") or []],
        }


def _managed(container_id: str, labels: dict[str, str], state: dict[str, Any]) -> Managed:
    timeout = labels.get(LABEL_TIMEOUT) or ""
    started = state.get("StartedAt") or ""
    return Managed(
        container_id=container_id,
        execution_id=labels.get(LABEL_EXECUTION_ID, ""),
        attempt=int(labels.get(LABEL_ATTEMPT, "0") or 0),
        running=state.get("Status") not in ("exited", "dead", "created"),
        started_at=_engine_time(started),
        timeout_s=float(timeout) if timeout else None,
        placement_group_id=labels.get(LABEL_PLACEMENT_GROUP, ""),
        secret_places=SecretPlaces.from_label(labels.get(LABEL_SECRET_REFS, "")),
    )


def _engine_time(text: str) -> float | None:
    # The engine reports "0001-01-01T00:00:00Z" for a container that never started.
    ts = parse_stamp(text.encode())
    return ts if ts is not None and ts > 0 else None
