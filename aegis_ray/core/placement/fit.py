"""Does an execution fit a node, and if not, why not (every failing check, Nomad-style).

Each check answers one question about one node and returns the reasons it fails. A node is
checked against its total capacity (could it ever fit?) and its free capacity (does it fit now?).
The explanation of a pending execution is produced by the same code that decides placement.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from aegis_ray.core.models.node import EXECUTING_ROLES, NodeStatus, NodeType
from aegis_ray.core.placement.demand import Demand
from aegis_ray.core.placement.dimensions import DIMENSIONS, Resources

Against = Literal["total", "free"]
_READY = NodeStatus.READY  # a module constant: looking up an enum member costs more than the check


@dataclass(frozen=True)
class NodeFacts:
    node_id: str
    role: NodeType
    status: NodeStatus
    tags: frozenset[str]
    total: Resources
    free: Resources  # what running work leaves
    ray_node_id: str = ""


@dataclass(frozen=True)
class Reason:
    check: str  # role | status | tag | a dimension's name (cpu, memory, disk, gpu, slots)
    message: str
    needed: float | None = None
    available: float | None = None


_OK: tuple[Reason, ...] = ()


# --- checks: one question each ------------------------------------------------------------


def check_role(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    if node.role in EXECUTING_ROLES:
        return _OK
    return (Reason("role", f"{node.role} nodes run no agent containers"),)


def check_status(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    if node.status == NodeStatus.READY:
        return _OK
    return (Reason("status", f"node is {node.status}"),)


def check_tags(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    return tuple(Reason("tag", f"missing tag {t}") for t in demand.tags if t not in node.tags)


_NOT_UP = frozenset({NodeStatus.DOWN, NodeStatus.GONE})


def check_resources(demand: Demand, node: NodeFacts, against: Against) -> tuple[Reason, ...]:
    """One reason per dimension the node is short of, in table order.

    A node that is down is refused by its status alone: what it has is what it registered, not
    what it offers now, and short-of reasons about it would be false.
    """
    if node.status in _NOT_UP:
        return _OK
    have = node.total if against == "total" else node.free
    if demand.resources.fits_in(have):
        return _OK
    against_total = against == "total"
    return tuple(
        Reason(
            dim.name,
            dim.refusal(needed, total, free, against_total=against_total),
            float(needed),
            float(available),
        )
        for dim, needed, total, free, available in zip(
            DIMENSIONS, demand.resources, node.total, node.free, have, strict=True
        )
        if needed > available
    )


# Order matters only for reading: who may run it, then where, then how much.
CHECKS = (check_role, check_status, check_tags, check_resources)


def check_node(demand: Demand, node: NodeFacts, *, against: Against) -> list[Reason]:
    """Every check `node` fails for `demand`, against its total or its free capacity."""
    # Against the total, what is free does not count: nodes of one shape share their reasons.
    free = node.free if against == "free" else node.total
    shape = (node.role, node.status, node.tags, node.total, free)
    return list(_check_shape(demand.resources, demand.tags, *shape, against))


# Clusters have few distinct node shapes and submissions few distinct demands: explain each
# shape once and share its (immutable) reasons, as Nomad memoises per computed node class.
# plan() over 1,000 nodes must stay in milliseconds.
@functools.lru_cache(maxsize=8192)
def _check_shape(
    need: Resources,
    tags: tuple[str, ...],
    role: NodeType,
    status: NodeStatus,
    node_tags: frozenset[str],
    total: Resources,
    free: Resources,
    against: Against,
) -> tuple[Reason, ...]:
    demand, node = Demand(need, tags), NodeFacts("", role, status, node_tags, total, free)
    return tuple(reason for check in CHECKS for reason in check(demand, node, against))


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
    fits_in, tags = demand.resources.fits_in, demand.tags
    for node in nodes:
        # The fast path: check_node(...) == [] without building reasons (check_role,
        # check_status and check_tags's questions, then the resources); a unit test holds the
        # two equal. Every submission asks it of every node.
        if node.status == _READY and node.role in EXECUTING_ROLES and node.tags.issuperset(tags):
            if fits_in(node.free):
                result.fits_now.append(node.node_id)
                continue
            if fits_in(node.total):
                result.fits_later.append(node.node_id)
                result.reasons[node.node_id] = check_node(demand, node, against="free")
                continue
        result.never.append(node.node_id)
        result.reasons[node.node_id] = check_node(demand, node, against="total")
    return result


def after_loss(lost_reason: str, lost_attempt: int, why: str) -> str:
    """Why an execution ends when its attempt was lost and the next cannot be placed: the
    loss first (it is what happened), then why no node can take it now."""
    lost = lost_reason or "lost"
    # A lost node is recorded as "node <id> lost" (the activity's AttemptLost).
    head = "node lost" if lost.startswith("node ") and lost.endswith(" lost") else "attempt lost"
    return f"{head}: {lost} (attempt {lost_attempt}); no node can take it again: {why}"


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
