"""Does an execution fit a node, and if not, why not (every failing check, Nomad-style).

Each check answers one question about one node and returns the reasons it fails. A node is
checked against its total capacity (could it ever fit?) and its free capacity (does it fit now?).
The explanation of a pending execution is produced by the same code that decides placement.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aegis_ray.core.models.quantity import format_cpu, format_memory
from aegis_ray.core.placement.demand import Demand
from aegis_ray.core.ray_mapping import (
    DISK,
    EXECUTOR,
    GIB,
    LABEL_NODE_ID,
    LABEL_ROLE,
    TAG_PREFIX,
)

EXECUTING_ROLES = frozenset({"edge", "hybrid"})
Against = Literal["total", "free"]


@dataclass(frozen=True)
class Capacity:
    cpu_millis: int
    memory_bytes: int
    disk_bytes: int
    gpu: int
    slots: int  # executor slots: how many more containers the node may run


@dataclass(frozen=True)
class NodeFacts:
    node_id: str
    role: str  # orchestrator | edge | hybrid
    status: str  # ready | draining | down
    tags: frozenset[str]
    total: Capacity
    free: Capacity
    ray_node_id: str = ""


@dataclass(frozen=True)
class Reason:
    check: str  # role | status | tag | cpu | memory | disk | gpu | slots
    message: str
    needed: float | None = None
    available: float | None = None


_OK: tuple[Reason, ...] = ()


# --- checks: one question each ------------------------------------------------------------


def check_role(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    if node.role in EXECUTING_ROLES:
        return _OK
    return _reason("role", f"{node.role} nodes run no agent containers")


def check_status(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    if node.status == "ready":
        return _OK
    return _reason("status", f"node is {node.status}")


def check_tags(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    if node.tags.issuperset(demand.tags):
        return _OK
    missing = [t for t in demand.tags if t not in node.tags]
    return tuple(_reason("tag", f"missing tag {t}")[0] for t in missing)


# Reasons are immutable and clusters have few distinct node shapes: share them instead of
# building thousands of equal ones (plan() over 1,000 nodes must stay in milliseconds).
@functools.lru_cache(maxsize=4096)
def _reason(
    check: str, message: str, needed: float | None = None, available: float | None = None
) -> tuple[Reason, ...]:
    return (Reason(check, message, needed, available),)


@functools.lru_cache(maxsize=4096)
def _short(
    check: str, needed: int, total: int, free: int, against: Against, show: Callable[[int], str]
) -> tuple[Reason, ...]:
    """The reason for a resource dimension that is too small."""
    if against == "total":
        message = f"{check}: needs {show(needed)}, node has {show(total)}"
        return _reason(check, message, float(needed), float(total))
    message = f"{check}: needs {show(needed)}, {show(free)} free of {show(total)}"
    return _reason(check, message, float(needed), float(free))


# The resource checks compare inline and build a Reason only on failure: plan() runs them for
# every node of the cluster on every submission.


def check_cpu(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    have = node.total if against == "total" else node.free
    if demand.cpu_millis <= have.cpu_millis:
        return _OK
    total, free = node.total.cpu_millis, node.free.cpu_millis
    return _short("cpu", demand.cpu_millis, total, free, against, format_cpu)


def check_memory(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    have = node.total if against == "total" else node.free
    if demand.memory_bytes <= have.memory_bytes:
        return _OK
    total, free = node.total.memory_bytes, node.free.memory_bytes
    return _short("memory", demand.memory_bytes, total, free, against, format_memory)


def check_disk(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    have = node.total if against == "total" else node.free
    if demand.disk_bytes <= have.disk_bytes:
        return _OK
    total, free = node.total.disk_bytes, node.free.disk_bytes
    return _short("disk", demand.disk_bytes, total, free, against, format_memory)


def check_gpu(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    have = node.total if against == "total" else node.free
    if demand.gpu <= have.gpu:
        return _OK
    return _short("gpu", demand.gpu, node.total.gpu, node.free.gpu, against, str)


def check_slots(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    have = node.total if against == "total" else node.free
    if have.slots >= 1:
        return _OK
    if against == "total":
        return _reason("slots", "slots: node has no executor slots", 1.0, 0.0)
    return _short("slots", 1, node.total.slots, node.free.slots, against, str)


# Order matters only for reading: who may run it, then where, then how much.
CHECKS = (
    check_role,
    check_status,
    check_tags,
    check_cpu,
    check_memory,
    check_disk,
    check_gpu,
    check_slots,
)


def check_node(demand: Demand, node: NodeFacts, *, against: Against) -> list[Reason]:
    """Every check `node` fails for `demand`, against its total or its free capacity."""
    reasons: list[Reason] = []
    for check in CHECKS:
        found = check(demand, node, against)
        if found:
            reasons += found
    return reasons


def _fits(demand: Demand, node: NodeFacts, have: Capacity) -> bool:
    # Fast path: must agree with check_node(...) == [] for the same capacity.
    return (
        node.status == "ready"
        and node.role in EXECUTING_ROLES
        and have.slots >= 1
        and demand.cpu_millis <= have.cpu_millis
        and demand.memory_bytes <= have.memory_bytes
        and demand.disk_bytes <= have.disk_bytes
        and demand.gpu <= have.gpu
        and node.tags.issuperset(demand.tags)
    )


# --- planning over the cluster ------------------------------------------------------------


@dataclass
class PlanResult:
    demand: Demand
    fits_now: list[str] = field(default_factory=list)
    fits_later: list[str] = field(default_factory=list)  # fits the totals, not the free capacity
    never: list[str] = field(default_factory=list)
    reasons: dict[str, list[Reason]] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        """Some node fits now or will once capacity is released."""
        return bool(self.fits_now or self.fits_later)

    def summary(self) -> str:
        """One line for humans: where it fits, what it waits for, or why it never will."""
        if self.fits_now:
            return f"fits now on {_count(len(self.fits_now), 'node')}"
        if self.fits_later:
            n = len(self.fits_later)
            match = ("matches" if n == 1 else "match") + (" tags" if self.demand.tags else "")
            busy = "busy" if n == 1 else "all busy"
            short = _tally(self.reasons[node] for node in self.fits_later)
            return f"waiting for capacity: {_count(n, 'node')} {match}, {busy} (short of {short})"
        if not self.never:
            return "no node can ever fit: the cluster has no nodes"
        why = _tally(self.reasons[node] for node in self.never)
        return f"no node can ever fit ({_count(len(self.never), 'node')}): {why}"


def plan(demand: Demand, nodes: Sequence[NodeFacts]) -> PlanResult:
    """Sort nodes into fits now / fits later / never, with every failing check for the rest."""
    result = PlanResult(demand)
    for node in nodes:
        if _fits(demand, node, node.free):
            result.fits_now.append(node.node_id)
        elif _fits(demand, node, node.total):
            result.fits_later.append(node.node_id)
            result.reasons[node.node_id] = check_node(demand, node, against="free")
        else:
            result.never.append(node.node_id)
            result.reasons[node.node_id] = check_node(demand, node, against="total")
    return result


def _label(reason: Reason) -> str:
    if reason.check in ("tag", "status"):
        return reason.message.removeprefix("node is ")
    if reason.check == "role":
        return reason.message.split(" ", 1)[0] + " role"
    return reason.check


def _tally(groups: Iterable[list[Reason]]) -> str:
    """How many nodes fail each way ("memory on 2, slots on 1"), most common first."""
    counts: Counter[str] = Counter()
    for reasons in groups:
        counts.update(list(dict.fromkeys(_label(r) for r in reasons)))  # once per node, in order
    return ", ".join(f"{label} on {n}" for label, n in counts.most_common())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# --- from Ray's node table ----------------------------------------------------------------


def capacity_of(resources: Mapping[str, float]) -> Capacity:
    """Capacity from a Ray resource map (CPU in cores, memory in bytes, disk in GiB)."""
    # Ray keeps quantities as fixed point with 4 decimals: round, never truncate 0.9999 to 0.
    return Capacity(
        cpu_millis=round(resources.get("CPU", 0.0) * 1000),
        memory_bytes=int(resources.get("memory", 0.0)),
        disk_bytes=round(resources.get(DISK, 0.0) * GIB),
        gpu=int(resources.get("GPU", 0.0) + 1e-6),
        slots=int(resources.get(EXECUTOR, 0.0) + 1e-6),
    )


def facts_from_ray_node(node: dict[str, Any], available: dict[str, float] | None) -> NodeFacts:
    """NodeFacts from one `ray.nodes()` entry and its available resources (None: all free)."""
    resources: dict[str, float] = node.get("Resources") or {}
    labels: dict[str, str] = node.get("Labels") or {}
    total = capacity_of(resources)
    alive = node.get("Alive", node.get("alive", False))
    return NodeFacts(
        node_id=labels.get(LABEL_NODE_ID) or str(node.get("NodeID", "")),
        role=labels.get(LABEL_ROLE, "hybrid"),
        status="ready" if alive else "down",
        tags=frozenset(k[len(TAG_PREFIX) :] for k in resources if k.startswith(TAG_PREFIX)),
        total=total,
        free=capacity_of(available) if available is not None else total,
        ray_node_id=str(node.get("NodeID", "")),
    )
