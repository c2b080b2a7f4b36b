"""The NodeConfig `aegis up` uses when none is given: this machine as one hybrid node."""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
from pathlib import Path

import psutil

from aegis_ray.core.models.loading import parse_node_config
from aegis_ray.core.models.node import NodeConfig, NodeType
from aegis_ray.core.models.quantity import GiB as GIB

# Share of RAM declared for agent containers; the rest stays for Ray, PostgreSQL and Temporal.
CONTAINER_MEMORY_SHARE = 0.8


def node_id_from_hostname(hostname: str) -> str:
    """A valid node id from a host name: lowercase, other characters to '-', at most 63."""
    name = re.sub(r"[^a-z0-9.-]+", "-", hostname.lower())[:63]
    name = name.strip("-.")
    return name or "local"


def default_node_config(home: Path, *, node_id: str | None = None) -> NodeConfig:
    """A hybrid node sized from this machine: all CPUs, 80% of RAM, free disk under `home`."""
    home.mkdir(parents=True, exist_ok=True)
    node_id = node_id or node_id_from_hostname(socket.gethostname())
    memory_gb = max(1, math.floor(CONTAINER_MEMORY_SHARE * psutil.virtual_memory().total / GIB))
    document = {
        "apiVersion": "100monkeys.ai/v1",
        "kind": "NodeConfig",
        "metadata": {"name": node_id.replace(".", "-")},
        "spec": {
            "node": {
                "id": node_id,
                "type": NodeType.HYBRID,
                "region": "local",
                "tags": ["local"],
                "resources": {
                    "cpu_cores": os.cpu_count() or 1,
                    "memory_gb": memory_gb,
                    "disk_gb": shutil.disk_usage(home).free // GIB,
                    "gpu": False,
                },
            }
        },
    }
    return parse_node_config(document, source=f"default node config for {node_id}")
