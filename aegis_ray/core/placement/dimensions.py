"""The resource dimensions placement compares, each spelled once (as Nomad's ComparableResources).

`Resources` is one amount of every dimension: what an execution needs, or what a node has in
total or free. Each of its fields is a dimension, annotated with the `Dimension` that says how
it is read from a manifest and from a NodeConfig, how it maps to and from Ray's resources, and
how it is shown in a refusal. The fit checks, the placement bundle, the `ray start` arguments and
the reading of Ray's node table all loop over `DIMENSIONS`; none names a dimension.

A new dimension is a change of three hand-written files:
1. this module: a field of `Resources` with its `Dimension`;
2. aegis_ray/core/models/agent.py: the manifest field (`ResourceSpec`) executions ask with;
3. aegis_ray/core/models/node.py: the NodeConfig field (`NodeResources`) nodes offer it with.
Nothing else names a dimension: the checks, refusals, bundle, `ray start` resources, Ray's node
table, registry, the API contract's capacities (`contract/cluster.py`) and the gRPC messages
(resources and capacities are maps keyed by name) loop over `DIMENSIONS` or carry any key. One
exception makes it four: a dimension Ray knows under its own name with its own `ray start` flag
(as CPU, GPU, memory) needs that flag in `ray_mapping.ray_start_args`. Enforcing a new kind of
limit inside the container (as GPUs would need) is the container runtime's work, not placement's.
"""

# No `from __future__ import annotations`: DIMENSIONS reads the fields' annotations as objects.
import math
from collections.abc import Callable
from dataclasses import dataclass
from operator import le
from typing import Annotated, Any, NamedTuple

from aegis_ray.core.models.agent import ResourceSpec
from aegis_ray.core.models.node import EXECUTING_ROLES, NodeConfig
from aegis_ray.core.models.quantity import GiB, format_cpu, format_memory
from aegis_ray.core.naming import CPU, DISK, EXECUTOR, GPU, MEMORY


@dataclass(frozen=True, eq=False)  # compared by identity: each is one row of the table
class Dimension:
    """One resource dimension. Amounts are whole numbers of its unit (millicores, bytes, ...)."""

    name: str  # the fit check's name and the first word of its refusals: "cpu"
    manifest: str | None  # field of spec.security.resources (None: `each_execution` applies)
    node_config: str  # dotted path in a NodeConfig's spec ("node.resources.cpu_cores")
    node_unit: int  # units per NodeConfig unit (1000 millicores per core)
    ray: str  # the Ray resource
    ray_unit: int = 1  # units per Ray unit (1000 millicores per CPU)
    show: Callable[[int], str] = str  # an amount as refusals show it
    executors_only: bool = False  # offered only by nodes that run containers
    each_execution: int = 0  # what every execution takes when the manifest has no field for it
    none_refusal: str = ""  # the refusal when the node has none at all (else the general one)

    def needed_by(self, resources: ResourceSpec) -> int:
        """What one execution with these manifest limits needs of this dimension."""
        if self.manifest is None:
            return self.each_execution
        return int(getattr(resources, self.manifest))

    def offered_by(self, cfg: NodeConfig) -> int:
        """What a node running `cfg` offers of this dimension (0 where it declares none)."""
        if self.executors_only and cfg.spec.node.type not in EXECUTING_ROLES:
            return 0
        value: Any = cfg.spec
        for key in self.node_config.split("."):
            value = getattr(value, key, None)
        return int(value or 0) * self.node_unit

    def to_ray(self, amount: int) -> float:
        """An amount as Ray counts it (cores, GiB)."""
        return amount / self.ray_unit

    def from_ray(self, amount: float) -> int:
        """An amount Ray reports, in this dimension's unit."""
        if self.ray_unit == 1:
            # Ray counts these in our unit and lets tasks take fractions of one (half a GPU):
            # only whole units are free. The epsilon undoes float error, not a real fraction.
            return math.floor(amount + 1e-6)
        # Ray counts in a larger unit as fixed point with 4 decimals: round to the nearest of
        # ours, never truncate 0.29999999 cores to 299 millicores.
        return round(amount * self.ray_unit)

    def refusal(self, needed: int, total: int, free: int, *, against_total: bool) -> str:
        """Why a node with `total` (and `free`) of this dimension cannot give `needed`."""
        show = self.show
        if not against_total:
            return f"{self.name}: needs {show(needed)}, {show(free)} free of {show(total)}"
        if total == 0 and self.none_refusal:
            return f"{self.name}: {self.none_refusal}"
        return f"{self.name}: needs {show(needed)}, node has {show(total)}"


class Resources(NamedTuple):
    """An amount of every dimension: what an execution needs, or what a node has.

    A tuple in table order, so that comparing two is one pass in C (placement runs it for every
    node of the cluster on every submission).
    """

    cpu_millis: Annotated[
        int,
        Dimension(
            "cpu",
            manifest="cpu",
            node_config="node.resources.cpu_cores",
            node_unit=1000,
            ray=CPU,
            ray_unit=1000,
            show=format_cpu,
        ),
    ] = 0
    memory_bytes: Annotated[
        int,
        Dimension(
            "memory",
            manifest="memory",
            node_config="node.resources.memory_gb",
            node_unit=GiB,
            ray=MEMORY,
            show=format_memory,
        ),
    ] = 0
    disk_bytes: Annotated[
        int,
        Dimension(
            "disk",
            manifest="disk",
            node_config="node.resources.disk_gb",
            node_unit=GiB,
            ray=DISK,
            ray_unit=GiB,
            show=format_memory,
            executors_only=True,
        ),
    ] = 0
    gpu: Annotated[
        int,
        Dimension("gpu", manifest="gpu", node_config="node.resources.gpu", node_unit=1, ray=GPU),
    ] = 0
    slots: Annotated[  # executor slots: how many more containers a node may run
        int,
        Dimension(
            "slots",
            manifest=None,
            each_execution=1,
            node_config="runtime.max_containers",
            node_unit=1,
            ray=EXECUTOR,
            executors_only=True,
            none_refusal="node has no executor slots",
        ),
    ] = 0

    def fits_in(self, have: "Resources") -> bool:
        """Every dimension of this need is at most what `have` has."""
        return all(map(le, self, have))

    def to_ray(self) -> dict[str, float]:
        """As Ray resources, leaving out the dimensions with nothing in them."""
        return {d.ray: d.to_ray(n) for d, n in zip(DIMENSIONS, self, strict=True) if n}

    @classmethod
    def needed_by(cls, resources: ResourceSpec) -> "Resources":
        """What one execution with these manifest limits needs."""
        return cls._make(d.needed_by(resources) for d in DIMENSIONS)

    @classmethod
    def offered_by(cls, cfg: NodeConfig) -> "Resources":
        """What a node running `cfg` offers in all."""
        return cls._make(d.offered_by(cfg) for d in DIMENSIONS)


DIMENSIONS: tuple[Dimension, ...] = tuple(
    Resources.__annotations__[name].__metadata__[0] for name in Resources._fields
)
