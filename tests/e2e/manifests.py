"""Agent manifests for end-to-end tests, written as YAML text the way a user would."""

from __future__ import annotations

import textwrap

IMAGE = "aegis-examples/agent:latest"


def agent_yaml(
    name: str,
    script: str,
    *,
    timeout: str = "60s",
    cpu: int = 250,
    memory: str = "32Mi",
    extra_runtime: str = "",
    image: str = IMAGE,
    pull: str = "Never",
) -> str:
    return (
        textwrap.dedent(
            f"""\
        apiVersion: 100monkeys.ai/v1
        kind: Agent
        metadata:
          name: {name}
          labels: {{suite: e2e}}
        spec:
          runtime:
            image: "{image}"
            image_pull_policy: {pull}
            command: ["sh", "-c", {script!r}]
          task:
            instruction: "test {name}"
            input: {{n: 1}}
          security:
            resources: {{cpu: {cpu}, memory: {memory}, disk: 16Mi}}
          execution:
            timeout: {timeout}
        """
        )
        + extra_runtime
    )
