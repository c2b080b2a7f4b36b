"""The Ray launch actor: runs one attempt's container on the node that holds its bundle.

The actor is scheduled into bundle 0 of the attempt's placement group, so it lands on the node
Ray reserved the resources on, and starts the container through that node's Docker engine.

Should the actor's process die (placement group removed, node lost, owner gone), the container
must not outlive it. Three backstops, in order:
1. a reaper process bound to the actor's lifetime by a pipe removes the attempt's containers
   when the actor dies in any way, SIGKILL included (see ``reaper``);
2. ``hard_deadline_s``: the actor stops the container itself, and the reaper kills it a little
   later should the actor be wedged;
3. the workflow's cleanup runs ``DockerRuntime.remove_for_execution`` on the node.
atexit and signal handlers are not used: Ray force-kills actor workers, so they would not run.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from aegis_ray.adapters.docker.container import ContainerSpec, LaunchError, PollResult
from aegis_ray.adapters.docker.reaper import Reaper, spawn_reaper
from aegis_ray.adapters.docker.runtime import DockerRuntime

RAY_NAMESPACE = "aegis"
NODE_ID_LABEL = "aegis/node-id"
CLEANUP_GRACE_S = 2.0
# poll, stop and cleanup must get through while start waits for an image pull.
MAX_CONCURRENCY = 4


class LaunchActorImpl:
    """Starts, watches, stops and removes exactly one container."""

    def __init__(self) -> None:
        self._runtime = DockerRuntime()
        self._start_lock = threading.Lock()  # held for the whole start: a retry waits for it
        self._lock = threading.Lock()
        self._spec: ContainerSpec | None = None
        self._container_id: str | None = None
        self._stop_requested = False
        self._deadline_hit = False
        self._timer: threading.Timer | None = None
        self._reaper: Reaper | None = None

    def node_info(self) -> dict[str, Any]:
        """Where this actor runs: Ray node id, host name, aegis node id (label), pid."""
        ctx = ray.get_runtime_context()
        label: Any = ctx.get_node_labels().get(NODE_ID_LABEL)
        if isinstance(label, list):  # typed as a list in Ray's signature, a str in practice
            label = label[0] if label else None
        return {
            "ray_node_id": ctx.get_node_id(),
            "hostname": socket.gethostname(),
            "aegis_node_id": label,
            "pid": os.getpid(),
        }

    def start(self, spec: ContainerSpec) -> str:
        """Pull (per policy) and start the container; a repeated call returns the same id."""
        with self._start_lock:
            if self._spec is not None:
                if (self._spec.execution_id, self._spec.attempt) != (
                    spec.execution_id,
                    spec.attempt,
                ):
                    raise LaunchError(
                        "invalid_spec",
                        f"this launch actor belongs to execution {self._spec.execution_id} "
                        f"attempt {self._spec.attempt}, not {spec.execution_id} "
                        f"attempt {spec.attempt}",
                    )
                if self._container_id is not None:
                    return self._container_id
            spec.validate()
            self._spec = spec
            if self._reaper is None:
                self._reaper = spawn_reaper(spec.execution_id, spec.attempt, spec.hard_deadline_s)
            self._runtime.ensure_image(spec)
            if self._stop_requested:
                raise LaunchError("start_failed", "stopped before the container was started")
            cid = self._runtime.start(spec)
            with self._lock:
                self._container_id = cid
                stop_now = self._stop_requested
            if stop_now:
                self._runtime.stop(cid, CLEANUP_GRACE_S)
            elif spec.hard_deadline_s is not None:
                self._timer = threading.Timer(spec.hard_deadline_s, self._deadline_reached)
                self._timer.daemon = True
                self._timer.start()
            return cid

    def poll(self) -> PollResult:
        """Lines printed since the last poll and whether the container still runs."""
        with self._lock:
            cid = self._container_id
        if cid is None:
            if self._start_lock.locked():
                return PollResult([], True, None)  # still pulling or creating
            return PollResult([], False, None, error="no container was started")
        result = self._runtime.poll(cid)
        if not result.running and self._deadline_hit:
            assert self._spec is not None and self._spec.hard_deadline_s is not None
            why = f"killed by the node's hard deadline after {self._spec.hard_deadline_s:g}s"
            result = PollResult(
                result.lines, False, result.exit_code, result.oom_killed, result.error or why
            )
        return result

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the container (SIGTERM, SIGKILL after ``grace_s``); also cancels a pending start."""
        with self._lock:
            self._stop_requested = True
            cid = self._container_id
        if cid is not None:
            self._runtime.stop(cid, grace_s)

    def cleanup(self) -> None:
        """Stop and remove the container; then the reaper is no longer needed."""
        if self._timer is not None:
            self._timer.cancel()
        self.stop(CLEANUP_GRACE_S)
        with self._lock:
            cid = self._container_id
        if cid is not None:
            self._runtime.remove(cid)
        # Only after a successful removal: otherwise the reaper removes it when we die.
        if self._reaper is not None:
            self._reaper.release()
            self._reaper = None

    def _deadline_reached(self) -> None:
        with self._lock:
            cid = self._container_id
        if cid is not None and self._runtime.is_running(cid):
            self._deadline_hit = True
            self._runtime.stop(cid, CLEANUP_GRACE_S)


LaunchActor = ray.remote(LaunchActorImpl)


def launch_actor_options(
    pg: Any, bundle: dict[str, float], *, name: str | None = None
) -> dict[str, Any]:
    """``LaunchActor.options(...)`` kwargs placing the actor in bundle 0 of ``pg``.

    The actor asks for exactly the bundle's resources, so the bundle is all it can use.
    """
    options: dict[str, Any] = {
        # Explicit: an actor in a bundle with the default num_cpus would never schedule.
        "num_cpus": bundle.get("CPU", 0),
        "num_gpus": bundle.get("GPU", 0),
        "memory": bundle.get("memory", 0),
        "resources": {k: v for k, v in bundle.items() if k not in ("CPU", "GPU", "memory")},
        "scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=pg,
            placement_group_bundle_index=0,
            placement_group_capture_child_tasks=False,
        ),
        "max_restarts": 0,
        "max_task_retries": 0,
        # Outlives a restart of the worker process that created it, so that a retried activity
        # finds the running container again by the actor's name; the placement group's
        # removal (always done after an attempt) ends it.
        "lifetime": "detached",
        "max_concurrency": MAX_CONCURRENCY,
    }
    if name is not None:
        options["name"] = name
        options["namespace"] = RAY_NAMESPACE
    return options
