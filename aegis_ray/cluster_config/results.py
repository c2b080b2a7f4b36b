"""What `aegis cluster validate` finds: a summary of a valid cluster YAML, or its problems."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ClusterProblem:
    """One thing wrong with a cluster YAML: where (node type or host), which key, and why."""

    where: str  # "node type edge-gpu", "host 10.0.0.11", "" for the document
    key: str  # "resources.CPU", "worker_start_ray_commands[1]", "" for the whole part
    message: str

    def render(self, source: str) -> str:
        return ": ".join(p for p in (source, self.where, self.key, self.message) if p)


class ClusterConfigError(ValueError):
    """A cluster YAML that `ray up` or aegis cannot use, with every problem found."""

    def __init__(self, source: str, problems: list[ClusterProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(p.render(self.source) for p in self.problems)


@dataclass(frozen=True)
class NodeRole:
    """What one node type (or on-prem host) runs."""

    name: str  # node type name, or the host address for the local provider
    role: str  # NodeConfig spec.node.type
    node_config: str  # the NodeConfig file, as the validator found it
    head: bool
    min_workers: int = 0
    max_workers: int = 0


@dataclass
class ClusterSummary:
    source: str
    provider: str
    nodes: list[NodeRole] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
