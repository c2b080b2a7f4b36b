"""The container an attempt runs: a manifest's image, task and limits as a ContainerSpec."""

from __future__ import annotations

import json

from aegis_ray.adapters.docker.container import ContainerSpec
from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.secrets import SecretDelivery


def container_spec(
    manifest: AgentManifest,
    execution_id: str,
    attempt: int,
    *,
    placement_group_id: str,
    secrets: SecretDelivery | None = None,
) -> ContainerSpec:
    """The manifest's image and limits plus the task as env; the node agent stops it at the
    manifest's timeout and removes it when its placement group goes. Env values from secrets
    are not here: `secrets` says where the node agent gets them."""
    spec = manifest.spec
    env = spec.plain_env()
    env.update(
        AEGIS_AGENT_NAME=manifest.metadata.name,
        AEGIS_TASK_INSTRUCTION=spec.task.instruction,
        AEGIS_TASK_INPUT=json.dumps(spec.task.input),
    )
    # "bridge" stands for "network allowed": the node agent puts the container on its node's
    # docker_network_mode (aegis-agents, kept from the host, unless the NodeConfig names another
    # network). "deny" is no network at all, like "none": no egress whatsoever.
    network = "bridge" if spec.security.network.mode == "allow" else "none"
    return ContainerSpec(
        execution_id=execution_id,
        attempt=attempt,
        image=spec.runtime.image,
        command=tuple(spec.runtime.command) if spec.runtime.command else None,
        env=env,
        cpu_millis=spec.security.resources.cpu,
        memory_bytes=spec.security.resources.memory,
        network_mode=network,
        pull_policy=spec.runtime.image_pull_policy,
        labels={"ai.100monkeys.aegis/agent": manifest.metadata.name},
        timeout_s=spec.execution.timeout,
        placement_group_id=placement_group_id,
        secrets=secrets,
    )
