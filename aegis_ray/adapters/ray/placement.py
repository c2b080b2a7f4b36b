"""Placement groups of execution attempts: create by name, wait without a thread, find, remove.

One STRICT_PACK group per attempt, detached and named after it
(`core.naming.placement_group_name`), so a restarted control-plane worker finds the group an
earlier try made.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import ray
from ray.util.placement_group import (
    PlacementGroup,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

from aegis_ray.adapters.ray.cluster_state import ClusterView


def find(name: str) -> PlacementGroup | None:
    """The live group of this name, if any."""
    try:
        found: PlacementGroup = get_placement_group(name)
    except ValueError:
        return None
    return found


def get_or_create(
    name: str, bundle: dict[str, float], view: ClusterView, eligible: list[str]
) -> PlacementGroup | None:
    """The attempt's group, created only when some node is eligible (else None)."""
    existing = find(name)
    if existing is not None:
        return existing
    selector = view.selector_for(eligible)
    if selector is None and not view.implicit_head:
        return None
    # Detached and named: survives a restart of the worker that created it, and can be found.
    created: PlacementGroup = placement_group(
        [bundle],
        strategy="STRICT_PACK",
        name=name,
        lifetime="detached",
        bundle_label_selector=[selector] if selector else None,
    )
    return created


def ready_future(pg: PlacementGroup | None) -> asyncio.Future[Any] | None:
    return asyncio.ensure_future(pg.ready()) if pg is not None else None


async def wait_ready(ready: asyncio.Future[Any] | None, timeout: float) -> bool:
    """Wait up to `timeout` for the group to be ready, without holding a thread meanwhile."""
    if ready is None:  # no eligible node yet: nothing to wait on but time
        await asyncio.sleep(timeout)
        return False
    done, _ = await asyncio.wait({ready}, timeout=timeout)
    return bool(done) and ready.exception() is None


def bundle_node(pg: PlacementGroup) -> str:
    """The Ray node id that holds the group's (only) bundle."""
    table = placement_group_table(pg)
    return str(table["bundles_to_node_id"][0])


def state(pg: PlacementGroup) -> str | None:
    """PENDING, CREATED, RESCHEDULING (its node died) or REMOVED; None if Ray has no record."""
    table = placement_group_table(pg)
    return str(table["state"]) if table else None


def remove(pg: PlacementGroup | None) -> None:
    if pg is not None:
        with contextlib.suppress(Exception):  # already removed, or Ray is going away
            remove_placement_group(pg)


def remove_named(name: str) -> None:
    remove(find(name))


def node_alive(ray_node_id: str) -> bool:
    return any(n["NodeID"] == ray_node_id and n["Alive"] for n in ray.nodes())
