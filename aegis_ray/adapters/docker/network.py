"""The Docker network of agents allowed network: out to the world, not into this host.

Docker's default bridge lets a container open any port of its host (the bridge's gateway is
the host, and so is every address of the host): Ray's GCS and raylet, the API's 8080/50051,
PostgreSQL, Temporal, OpenBao. The network aegis makes for agents (`aegis-agents` unless the
NodeConfig's `spec.runtime.docker_network_mode` names another) is a bridge with a bridge
interface name of its own, and one iptables rule in the INPUT chain rejects every packet that
arrives from that interface for the host itself. Forwarded traffic (the internet, through
Docker's masquerading) is untouched; Docker's embedded DNS answers inside the container's own
namespace and keeps working.

The rule is installed (idempotently) whenever an agent with network starts, and removed with
the network when `aegis down` finds no container left on it. A network of that name that aegis
did not make (no `aegis.network` label), or Docker's `bridge`, is used as it is: isolating it is
then the operator's business (README, "Agents' network").
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from docker.errors import APIError, NotFound

from aegis_ray.adapters import firewall

log = logging.getLogger(__name__)

LABEL_NETWORK = "aegis.network"
COMMENT = "aegis: agents may not reach this host"
_IFACE_MAX = 15  # IFNAMSIZ - 1


def bridge_interface(network: str) -> str:
    """The Linux bridge name of an aegis network: short (15 characters) and stable."""
    return ("aeg-" + hashlib.sha256(network.encode()).hexdigest())[:_IFACE_MAX]


def _rule(iface: str) -> list[str]:
    # icmp-port-unreachable: a connect() from the agent fails at once (ECONNREFUSED) for TCP
    # and UDP alike, instead of hanging until its own timeout.
    return [
        "-i", iface, "-m", "comment", "--comment", COMMENT,
        "-j", "REJECT", "--reject-with", "icmp-port-unreachable",
    ]  # fmt: skip


def rule_installed(iface: str) -> bool:
    return firewall.installed("INPUT", _rule(iface))


def install_rule(iface: str) -> None:
    firewall.install("INPUT", _rule(iface))


def remove_rule(iface: str) -> None:
    firewall.remove("INPUT", _rule(iface))


def ensure_agent_network(client: Any, name: str) -> bool:
    """The network `name` exists; if aegis makes or made it, it is isolated from this host.
    Returns whether it is an isolated aegis network."""
    try:
        network = client.networks.get(name)
    except NotFound:
        network = _create(client, name)
    if (network.attrs.get("Labels") or {}).get(LABEL_NETWORK) != "agents":
        log.warning("Docker network %s is not aegis's: agents on it may reach this host", name)
        return False
    install_rule(bridge_interface(name))
    return True


def _create(client: Any, name: str) -> Any:
    try:
        return client.networks.create(
            name,
            driver="bridge",
            options={"com.docker.network.bridge.name": bridge_interface(name)},
            labels={LABEL_NETWORK: "agents"},
            check_duplicate=True,
        )
    except APIError as err:
        if err.status_code != 409:  # 409: another agent made it meanwhile
            raise
        return client.networks.get(name)


def remove_unused_agent_networks(client: Any) -> list[str]:
    """Remove every aegis agents' network no container is on (and its rule); their names."""
    networks = client.networks.list(filters={"label": f"{LABEL_NETWORK}=agents"})
    return [n.name for n in networks if remove_agent_network(client, n.name)]


def remove_agent_network(client: Any, name: str) -> bool:
    """Remove aegis's network `name` and its rule if no container is on it; True if removed."""
    try:
        network = client.networks.get(name)
    except NotFound:
        remove_rule(bridge_interface(name))
        return False
    if (network.attrs.get("Labels") or {}).get(LABEL_NETWORK) != "agents":
        return False
    network.reload()
    if network.attrs.get("Containers"):
        return False
    try:
        network.remove()
    except (APIError, NotFound):  # a container joined meanwhile: keep both
        return False
    remove_rule(bridge_interface(name))
    return True
