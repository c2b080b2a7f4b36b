"""An agent allowed network reaches the world, not this node's own services (issue 12, item 10).

Real Docker and real iptables: a probe in a container on Docker's default bridge (what
`network.mode: allow` used to be) reaches the node's gRPC API and Ray's GCS on the node's
address, and the same probe in an `allow` execution, on aegis's own network, reaches none of
them, neither on the node's address nor on its bridge's gateway.
"""

from __future__ import annotations

import docker

from aegis_ray.adapters.docker.network import (
    LABEL_NETWORK,
    bridge_interface,
    ensure_agent_network,
    remove_agent_network,
    rule_installed,
)
from aegis_ray.core.models.node import DEFAULT_DOCKER_NETWORK
from aegis_ray.node.stack import UpState
from tests.e2e.conftest import Stack
from tests.e2e.manifests import IMAGE, agent_yaml


def _targets(stack: Stack) -> list[str]:
    state = UpState.load(stack.home / "up.json")
    assert state is not None and state.ray_address
    node_ip, ray_port = state.ray_address.rsplit(":", 1)
    grpc = stack.env["AEGIS_GRPC_PORT"]
    rest = stack.env["AEGIS_API_PORT"]
    # The node's address (where Ray listens and the gRPC API on every interface) and the
    # gateway of the container's own network, which is this host too.
    return [f"{node_ip}:{grpc}", f"{node_ip}:{ray_port}", f"{node_ip}:{rest}",
            f"GW:{grpc}", f"GW:{ray_port}"]  # fmt: skip


def _probe(targets: list[str]) -> str:
    checks = " ".join(targets)
    return (
        "set -- $(ip route | grep default); gw=$3; "
        '[ -n "$gw" ] || echo "no gateway"; '
        f"for t in {checks}; do t=$(echo $t | sed s/GW/$gw/); "
        'if nc -w 3 ${t%:*} ${t#*:} </dev/null >/dev/null 2>&1; then echo "open $t"; '
        'else echo "closed $t"; fi; done'
    )


def probe_from_default_bridge(targets: list[str]) -> str:
    engine = docker.from_env()
    out: bytes = engine.containers.run(
        IMAGE, ["sh", "-c", _probe(targets)], network_mode="bridge", remove=True, user="65534"
    )
    print("default bridge:\n" + out.decode())
    return out.decode()


def test_an_allowed_agent_cannot_reach_the_nodes_api_or_ray(stack: Stack) -> None:
    targets = _targets(stack)
    engine = docker.from_env()
    # Control: from Docker's default bridge Ray's GCS answers (the probe can fail); the gRPC
    # API does not, `aegis up` keeps it to loopback (test_local_exposure.py).
    control = probe_from_default_bridge(targets)
    assert f"open {targets[1]}" in control, control

    client = stack.client()
    manifest = agent_yaml("egress-probe", _probe(targets), timeout="90s").replace(
        "  security:\n", "  security:\n    network: {mode: allow}\n", 1
    )
    done = client.run(manifest, timeout=180)
    lines = [ln.line for ln in client.logs(done.id)]
    print(f"aegis network ({DEFAULT_DOCKER_NETWORK}):\n" + "\n".join(lines))
    assert done.state.value == "SUCCEEDED", (done, lines)
    assert len(lines) == len(targets) and all(ln.startswith("closed ") for ln in lines), lines

    network = engine.networks.get(DEFAULT_DOCKER_NETWORK)
    assert network.attrs["Labels"].get(LABEL_NETWORK) == "agents"
    assert rule_installed(bridge_interface(DEFAULT_DOCKER_NETWORK))


def test_the_network_and_its_rule_go_once_no_container_uses_them(stack: Stack) -> None:
    """What `aegis down` does (the stack keeps running: the next allowed agent makes them again)."""
    engine = docker.from_env()
    assert ensure_agent_network(engine, DEFAULT_DOCKER_NETWORK)  # as a node agent does
    blocker = engine.containers.run(
        IMAGE, ["sleep", "60"], network=DEFAULT_DOCKER_NETWORK, detach=True, user="65534"
    )
    try:
        assert remove_agent_network(engine, DEFAULT_DOCKER_NETWORK) is False  # still in use
        assert rule_installed(bridge_interface(DEFAULT_DOCKER_NETWORK))
    finally:
        blocker.remove(force=True)
    assert remove_agent_network(engine, DEFAULT_DOCKER_NETWORK) is True
    assert not rule_installed(bridge_interface(DEFAULT_DOCKER_NETWORK))
    assert DEFAULT_DOCKER_NETWORK not in {n.name for n in engine.networks.list()}
